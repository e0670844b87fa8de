//! A plant that speaks Modbus: the simulator's meters, water totaliser and cooling units served
//! as a Modbus TCP server, laid out by a register map (`deploy/modbus/sim-plant.toml`). The
//! demo and the tests use it to run the whole facility path over the real protocol; the same
//! map file drives the collector, so encoding and decoding cannot drift apart.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kilowatch_model::{FieldValue, Point, Timestamp};
use kilowatch_sim::{Emit, SimConfig, Site};
use tokio::net::TcpListener;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

use super::regmap::{EncodeError, Function, RegisterMap, encode, encode_state};

/// Holding and input registers, all 65,536 of each, zero until written.
#[derive(Debug, Clone)]
pub struct RegisterBank {
    pub holding: Vec<u16>,
    pub input: Vec<u16>,
}

impl Default for RegisterBank {
    fn default() -> Self {
        RegisterBank { holding: vec![0; 65_536], input: vec![0; 65_536] }
    }
}

impl RegisterBank {
    pub fn write(&mut self, f: Function, address: u16, words: &[u16]) {
        let t = match f {
            Function::Holding => &mut self.holding,
            Function::Input => &mut self.input,
        };
        let a = usize::from(address);
        let n = words.len().min(t.len().saturating_sub(a));
        t[a..a + n].copy_from_slice(&words[..n]);
    }
}

pub type SharedBank = Arc<RwLock<RegisterBank>>;

#[derive(Debug, thiserror::Error)]
pub enum PlantError {
    #[error("register {field} of {measurement}: {source}")]
    Encode { measurement: String, field: String, source: EncodeError },
    #[error("the register map wants {measurement}.{field} {tags:?}, which the simulator does not produce")]
    Missing { measurement: String, field: String, tags: String },
    #[error("register bank lock poisoned")]
    Poisoned,
}

/// Writes every mapped value of `points` into `bank`. Every register of the map must find its
/// value: a map naming a field the simulator lacks is an error, not a silent zero.
pub fn encode_points(map: &RegisterMap, points: &[Point], bank: &SharedBank) -> Result<(), PlantError> {
    let mut b = bank.write().map_err(|_| PlantError::Poisoned)?;
    for r in &map.registers {
        let p = points.iter().find(|p| p.measurement == r.measurement && r.tags.iter().all(|(k, v)| p.tag_value(k) == Some(v.as_str())) && p.get(&r.field).is_some());
        let Some(v) = p.and_then(|p| p.get(&r.field)) else {
            return Err(PlantError::Missing { measurement: r.measurement.clone(), field: r.field.clone(), tags: format!("{:?}", r.tags) });
        };
        let enc = |e| PlantError::Encode { measurement: r.measurement.clone(), field: r.field.clone(), source: e };
        let words = match v {
            FieldValue::Str(s) => encode_state(r, s).map_err(enc)?,
            other => encode(r, other.as_f64().unwrap_or(f64::NAN)).map_err(enc)?,
        };
        b.write(r.function, r.address, &words);
    }
    Ok(())
}

/// Answers reads of holding and input registers from the bank (and writes of holding
/// registers, so tests can poke values). Any unit id is accepted: a plant behind one gateway.
#[derive(Clone)]
struct BankService {
    bank: SharedBank,
}

fn answer(bank: &SharedBank, req: Request<'_>) -> Result<Response, ExceptionCode> {
    let range = |a: u16, n: u16| {
        let (a, n) = (usize::from(a), usize::from(n));
        if n == 0 || n > 125 || a + n > 65_536 { Err(ExceptionCode::IllegalDataAddress) } else { Ok(a..a + n) }
    };
    match req {
        Request::ReadHoldingRegisters(a, n) => {
            let b = bank.read().map_err(|_| ExceptionCode::ServerDeviceFailure)?;
            Ok(Response::ReadHoldingRegisters(b.holding[range(a, n)?].to_vec()))
        }
        Request::ReadInputRegisters(a, n) => {
            let b = bank.read().map_err(|_| ExceptionCode::ServerDeviceFailure)?;
            Ok(Response::ReadInputRegisters(b.input[range(a, n)?].to_vec()))
        }
        Request::WriteSingleRegister(a, w) => {
            bank.write().map_err(|_| ExceptionCode::ServerDeviceFailure)?.write(Function::Holding, a, &[w]);
            Ok(Response::WriteSingleRegister(a, w))
        }
        Request::WriteMultipleRegisters(a, ws) => {
            let n = u16::try_from(ws.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
            range(a, n)?;
            bank.write().map_err(|_| ExceptionCode::ServerDeviceFailure)?.write(Function::Holding, a, &ws);
            Ok(Response::WriteMultipleRegisters(a, n))
        }
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

impl tokio_modbus::server::Service for BankService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        std::future::ready(answer(&self.bank, req.request))
    }
}

/// Serves `bank` on `listener` until `stop` completes.
pub async fn serve(listener: TcpListener, bank: SharedBank, stop: impl Future<Output = ()> + Send + Sync + 'static) -> std::io::Result<()> {
    let server = Server::new(listener);
    let on_connected = |stream, addr: SocketAddr| {
        let bank = bank.clone();
        async move { accept_tcp_connection(stream, addr, move |_| Ok(Some(BankService { bank: bank.clone() }))) }
    };
    let on_error = |e: std::io::Error| tracing::debug!(error = %e, "Modbus client connection ended");
    server.serve_until(&on_connected, on_error, stop).await.map(|_| ())
}

/// The simulated site reduced to its facility points (meters, water, cooling units), which is
/// all the plant serves.
pub fn plant_site(seed: u64, site: &str, start: Timestamp) -> Site {
    Site::new(SimConfig { seed, site: site.into(), emit: Emit { gpus: false, nodes: false, facility: true }, start, ..SimConfig::default() })
}

/// `kilowatch-collector sim-plant` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SimPlantArgs {
    /// Address to serve Modbus TCP on.
    #[arg(long, default_value = "127.0.0.1:5020")]
    pub listen: SocketAddr,
    /// The register map laying out the plant.
    #[arg(long, default_value = "deploy/modbus/sim-plant.toml")]
    pub map: std::path::PathBuf,
    #[arg(long, default_value_t = 5)]
    pub seed: u64,
    /// Simulated seconds per wall-clock second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Wall-clock seconds between register updates.
    #[arg(long, default_value_t = 1.0)]
    pub step_s: f64,
}

/// Runs the simulated site from now, `speed` times real time, refreshing the registers every
/// `step_s` of wall time, until Ctrl-C.
pub async fn run(args: SimPlantArgs) -> anyhow::Result<()> {
    let map = RegisterMap::load(&args.map)?;
    let listener = TcpListener::bind(args.listen).await?;
    let bank: SharedBank = Arc::new(RwLock::new(RegisterBank::default()));
    let start = Timestamp::now();
    let mut site = plant_site(args.seed, "dc5", start);
    encode_points(&map, &site.points(), &bank)?;
    tracing::info!(listen = %args.listen, registers = map.registers.len(), speed = args.speed, "simulated plant serving Modbus TCP");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, bank.clone(), async move {
        let _ = rx.await;
    }));
    let began = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.step_s.max(0.01)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let sim_ns = (began.elapsed().as_secs_f64() * args.speed * 1e9) as i64;
        site.advance_to(Timestamp(start.0 + sim_ns));
        encode_points(&map, &site.points(), &bank)?;
    }
    let _ = tx.send(());
    server.await??;
    Ok(())
}
