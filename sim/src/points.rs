//! The site's state as wire-schema points. Building ~1,200 points with their tag maps every
//! second (or 43,200 times for a month of backfill) is mostly allocation, so [`PointBuf`] keeps
//! the previous step's points and only rewrites values and timestamps when the layout is the
//! same.

use kilowatch_model::metric::{COOLING, GPU, INFERENCE, METER, NODE, WATER};
use kilowatch_model::{FieldValue, Point, Timestamp};

use crate::gpu::{self, MEM_CLOCK_MHZ, MEM_TOTAL_BYTES, POWER_LIMIT_W};
use crate::meters::METERS;
use crate::{Site, node_name, psy};

/// A reusable buffer of a site's points. Fill it with [`Site::fill_points`].
#[derive(Debug, Clone, Default)]
pub struct PointBuf {
    points: Vec<Point>,
    layout: Option<u64>,
}

impl PointBuf {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn points(&self) -> &[Point] {
        &self.points
    }
    pub fn into_points(self) -> Vec<Point> {
        self.points
    }
}

/// A field value without an owned string, so values can be computed before deciding whether
/// to build or overwrite.
#[derive(Clone, Copy)]
enum V<'a> {
    F(f64),
    I(i64),
    S(&'a str),
}

/// Writes point `idx`: overwrite in place when reusing, else build it with `tags`.
struct Writer<'a> {
    out: &'a mut Vec<Point>,
    reuse: bool,
    idx: usize,
    ts: Timestamp,
}

impl Writer<'_> {
    fn put(&mut self, measurement: &str, tags: impl FnOnce() -> Vec<(&'static str, String)>, fields: &[(&'static str, V<'_>)]) {
        if self.reuse {
            if let Some(p) = self.out.get_mut(self.idx) {
                p.ts = self.ts;
                for (slot, (_, v)) in p.fields.iter_mut().zip(fields) {
                    match (&mut slot.1, *v) {
                        (FieldValue::F64(x), V::F(y)) => *x = y,
                        (FieldValue::I64(x), V::I(y)) => *x = y,
                        (FieldValue::Str(x), V::S(y)) => {
                            if x != y {
                                x.clear();
                                x.push_str(y);
                            }
                        }
                        (slot, v) => *slot = to_field(v),
                    }
                }
            }
        } else {
            let mut p = Point::new(measurement, self.ts);
            for (k, v) in tags() {
                p.tags.insert(k.to_owned(), v);
            }
            p.fields = fields.iter().map(|(k, v)| ((*k).to_owned(), to_field(*v))).collect();
            self.out.push(p);
        }
        self.idx += 1;
    }
}

fn to_field(v: V<'_>) -> FieldValue {
    match v {
        V::F(x) => FieldValue::F64(x),
        V::I(x) => FieldValue::I64(x),
        V::S(x) => FieldValue::Str(x.to_owned()),
    }
}

/// Rounds to `step` (e.g. 0.001 for NVML's milliwatts): the resolution the real sensor has.
#[inline]
fn q(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

impl Site {
    /// Every point at `now()`, per `emit`: for each reported node its GPUs in order then the
    /// node, then the facility (meters, water, cooling units).
    pub fn points(&self) -> Vec<Point> {
        let mut buf = PointBuf::new();
        self.fill_points(&mut buf);
        buf.into_points()
    }

    /// Same as [`Site::points`] into a reusable buffer: after the first call, values and
    /// timestamps are overwritten in place without allocating.
    pub fn fill_points(&self, buf: &mut PointBuf) {
        let layout = self.layout_key();
        let reuse = buf.layout == Some(layout);
        if !reuse {
            buf.points.clear();
            buf.layout = Some(layout);
        }
        let mut w = Writer { out: &mut buf.points, reuse, idx: 0, ts: self.now };
        let site = self.cfg.site.as_str();
        let g = self.cfg.gpus_per_node.max(1);
        let snap = &self.snap;
        for n in self.lo..self.hi {
            if self.cfg.emit.gpus {
                for k in 0..g {
                    let i = n * g + k;
                    let r = &snap.gpus[i];
                    let st = &self.gpu_static[i];
                    let temp = q(r.temp_c, 1.0);
                    w.put(
                        GPU,
                        || vec![("site", site.to_owned()), ("node", node_name(n)), ("gpu", k.to_string()), ("uuid", st.uuid.clone())],
                        &[
                            ("power_w", V::F(q(r.power_w, 0.001))),
                            ("energy_mj", V::I(self.gpu_energy_mj[i].floor() as i64)),
                            ("power_limit_w", V::F(POWER_LIMIT_W)),
                            ("temp_c", V::F(temp)),
                            ("temp_margin_c", V::F(q(gpu::temp_margin_c(r), 1.0))),
                            ("mem_temp_c", V::F(q(r.mem_temp_c, 1.0))),
                            ("util_pct", V::F(q(r.util_pct, 1.0))),
                            ("mem_util_pct", V::F(q(r.mem_util_pct, 1.0))),
                            ("sm_clock_mhz", V::I(r.sm_clock_mhz)),
                            ("mem_clock_mhz", V::I(MEM_CLOCK_MHZ)),
                            ("mem_used_bytes", V::I(r.mem_used_bytes)),
                            ("mem_total_bytes", V::I(MEM_TOTAL_BYTES)),
                            ("throttle_reasons", V::I(r.throttle_reasons)),
                        ],
                    );
                }
            }
            if self.cfg.emit.gpus {
                for (i, sv) in self.servers.iter().enumerate().filter(|(_, sv)| sv.node == n) {
                    let c = &self.server_counters[i];
                    let gpus = sv.gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
                    let pid = sv.pid.to_string();
                    w.put(
                        INFERENCE,
                        || {
                            let mut t =
                                vec![("site", site.to_owned()), ("node", node_name(n)), ("server", sv.name.clone()), ("engine", sv.model.engine.to_owned()), ("model", sv.model.model.to_owned())];
                            if !sv.model.tenant.is_empty() {
                                t.push(("tenant", sv.model.tenant.to_owned()));
                            }
                            t
                        },
                        &[
                            // Whole tokens and requests, as the servers count them.
                            ("prompt_tokens", V::F(c.prompt.floor())),
                            ("generation_tokens", V::F(c.generated.floor())),
                            ("requests", V::F(c.requests.floor())),
                            ("ttft_sum_s", V::F(c.ttft_sum_s)),
                            ("ttft_count", V::F(c.requests.floor())),
                            ("gpus", V::S(&gpus)),
                            ("pid", V::S(&pid)),
                        ],
                    );
                }
            }
            if self.cfg.emit.nodes {
                w.put(NODE, || vec![("site", site.to_owned()), ("node", node_name(n))], &[("power_w", V::F(q(snap.node_w[n], 1.0))), ("energy_j", V::F(self.node_energy_j[n]))]);
            }
        }
        if !self.cfg.emit.facility {
            return;
        }
        for (i, (meter, role, category)) in METERS.iter().enumerate() {
            w.put(
                METER,
                || {
                    let mut t = vec![("site", site.to_owned()), ("meter", (*meter).to_owned()), ("role", (*role).to_owned())];
                    if let Some(c) = category {
                        t.push(("category", (*c).to_owned()));
                    }
                    t
                },
                &[("energy_kwh", V::F(self.meter_kwh[i])), ("power_w", V::F(snap.meters.w[i]))],
            );
        }
        w.put(WATER, || vec![("site", site.to_owned()), ("meter", "makeup-1".to_owned()), ("potable", "true".to_owned())], &[("volume_m3", V::F(self.water_m3))]);
        let p = &snap.plant;
        for (u, (offset, share)) in self.unit_offset_c.iter().zip(&self.unit_share).enumerate() {
            let mut supply = p.path.supply_c + offset;
            let units = self.unit_share.len() as f64;
            // A failed unit: fans and pumps stopped, its cold aisle full of recirculated air.
            let failed = self.cfg.scenario.unit_failed(u, self.now);
            let (mut fan_w, mut pump_w) = (q(p.fan_w * share, 1.0), q(p.pump_w / units, 1.0));
            if let Some(rise) = failed {
                supply += rise;
                fan_w = 0.0;
                pump_w = 0.0;
            }
            w.put(
                COOLING,
                || vec![("site", site.to_owned()), ("unit", format!("cu-{:02}", u + 1))],
                &[
                    ("outside_temp_c", V::F(q(snap.air.temp_c, 0.1))),
                    ("outside_rh_pct", V::F(q(snap.air.rh_pct, 0.1))),
                    ("supply_temp_c", V::F(q(supply, 0.1))),
                    ("supply_rh_pct", V::F(q(psy::rh_from_humidity_ratio(supply, p.path.supply_w), 0.1))),
                    ("return_temp_c", V::F(q(p.return_c + offset, 0.1))),
                    ("fan_power_w", V::F(fan_w)),
                    // Pumps and controls are shared evenly.
                    ("pump_power_w", V::F(pump_w)),
                    ("mode", V::S(p.path.mode.as_str())),
                ],
            );
        }
    }

    /// Identifies which points, in which order, `fill_points` produces.
    fn layout_key(&self) -> u64 {
        let c = &self.cfg;
        let mut h = crate::noise::hash3(c.seed, self.lo as u64, self.hi as u64);
        h = crate::noise::hash3(h, c.gpus_per_node as u64, c.cooling_units as u64);
        h = crate::noise::hash3(h, u64::from(c.emit.gpus) | u64::from(c.emit.nodes) << 1 | u64::from(c.emit.facility) << 2, u64::from(c.inference));
        for b in c.site.bytes() {
            h = crate::noise::mix(h ^ u64::from(b));
        }
        h
    }
}
