//! Issue 29 item 11: the training snippets of docs/inference.md, run as they are on the page with
//! python3 against the real server, post one step per optimizer step carrying the whole job's
//! global batch × sequence length (data, tensor and pipeline parallelism, gradient accumulation).
//! Only the model, the data loader and Lightning's trainer are stubbed.

mod common;

use common::{READ, Server, WRITE};
use serde_json::Value;
use std::process::Command;

/// The page's ```python blocks, in order.
fn python_blocks(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("```python\n") {
        let body = &rest[start + "```python\n".len()..];
        let end = body.find("```").expect("a closed block");
        out.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    out
}

fn block<'a>(blocks: &'a [String], marker: &str) -> &'a str {
    let found: Vec<&String> = blocks.iter().filter(|b| b.contains(marker)).collect();
    assert_eq!(found.len(), 1, "one block of docs/inference.md holds {marker:?}");
    found[0]
}

/// Stand-ins for torch tensors, the model, the optimizer and Lightning: only what the snippets touch.
const STUBS: &str = r#"
import sys, types
class Tensor:
    def __init__(self, shape): self.shape = shape
class Loss:
    def __truediv__(self, k): return self
    def backward(self): pass
class Model:
    def __call__(self, **batch): return types.SimpleNamespace(loss=Loss())
class Optimizer:
    steps = 0
    def step(self): Optimizer.steps += 1
    def zero_grad(self): pass
model, optimizer = Model(), Optimizer()
class Callback: pass
class Trainer:
    def __init__(self, devices=1, num_nodes=1, accumulate_grad_batches=1, callbacks=()):
        self.world_size, self.accumulate_grad_batches = devices * num_nodes, accumulate_grad_batches
        self.callbacks, self.global_step, self.is_global_zero = list(callbacks), 0, True
    def fit(self, batches):
        # As Lightning does: the optimizer steps (and global_step moves) before the batch-end hook.
        for i, b in enumerate(batches):
            if (i + 1) % self.accumulate_grad_batches == 0:
                self.global_step += 1
            for c in self.callbacks: c.on_train_batch_end(self, None, None, b, i)
        for c in self.callbacks: c.on_train_end(self, None)
sys.modules["lightning"] = types.SimpleNamespace(Callback=Callback, Trainer=Trainer)
"#;

/// Runs off the runtime's thread: the server answering the script lives on it.
async fn run_python(script: String, server: &Server, job_id: &'static str, world: &'static str) {
    let url = server.url("");
    let out = tokio::task::spawn_blocking(move || run_blocking(&script, &url, job_id, world)).await.expect("joined");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python3 failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("progress not sent"), "{stdout}");
}

fn run_blocking(script: &str, url: &str, job_id: &str, world: &str) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("KILOWATCH_URL", url)
        .env("KILOWATCH_TOKEN", WRITE)
        .env("SLURM_JOB_ID", job_id)
        .env("WORLD_SIZE", world)
        .env("RANK", "0")
        .output()
        .expect("python3 runs")
}

async fn training(s: &Server) -> Vec<Value> {
    // The snippets stamp steps with the current second; a window may not end in the future, so
    // wait for that second to pass and end the window now.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let from = kilowatch_model::Timestamp::from_secs(now - 3600).to_rfc3339();
    let to = kilowatch_model::Timestamp::from_secs(now).to_rfc3339();
    let r = reqwest::Client::new().get(s.url("/api/v1/models")).query(&[("from", from), ("to", to)]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let v: Value = r.json().await.expect("json");
    v["training"].as_array().unwrap_or_else(|| panic!("{v:#}")).clone()
}

fn job<'a>(training: &'a [Value], id: &str) -> &'a Value {
    training.iter().find(|t| t["job"] == id).unwrap_or_else(|| panic!("no {id} in {training:#?}"))
}

#[tokio::test]
async fn the_pages_training_snippets_post_global_batch_times_sequence_per_optimizer_step() {
    if !common::require_tool("python3", "python3") {
        return;
    }
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/inference.md")).expect("docs/inference.md");
    let blocks = python_blocks(&page);
    let helpers = block(&blocks, "def global_batch");
    let loop_ = block(&blocks, "for i, batch in enumerate(loader");
    let lightning = block(&blocks, "import lightning");
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;

    // PyTorch: the page's GRAD_ACCUM, TP, PP = 8, 2, 4 over 64 ranks is 8 data-parallel replicas.
    // 43 micro-batches of 4 × 2,048 make 5 optimizer steps (the last 3 never step).
    let pytorch = format!(
        "{STUBS}\nloader = [{{'input_ids': Tensor((4, 2048))}} for _ in range(43)]\n{helpers}\n\
         try:\n    global_batch(1, 1, 6, 4, 1)\n    raise SystemExit('6 ranks over TP x PP = 4 accepted')\nexcept ValueError:\n    pass\n\
         {loop_}\nassert Optimizer.steps == 5, Optimizer.steps\n"
    );
    run_python(pytorch, &s, "4242", "64").await;
    // Lightning: 8 devices × 4 nodes, 4 micro-batches of 2 × 4,096 per optimizer step; 12 batches.
    let lightning = format!("{STUBS}\n{helpers}\n{lightning}\ntrainer.fit([{{'input_ids': Tensor((2, 4096))}} for _ in range(12)])\n");
    run_python(lightning, &s, "4343", "1").await;

    let t = training(&s).await;
    let pt = job(&t, "slurm:4242");
    let per_step_samples = 4.0 * 8.0 * (64.0 / (2.0 * 4.0));
    assert_eq!((pt["steps"].as_u64(), pt["first_step"].as_u64(), pt["last_step"].as_u64()), (Some(5), Some(1), Some(5)), "{pt:#}");
    assert_eq!(pt["samples"].as_f64(), Some(5.0 * per_step_samples), "{pt:#}");
    assert_eq!(pt["tokens"].as_f64(), Some(5.0 * per_step_samples * 2048.0), "{pt:#}");
    let lt = job(&t, "slurm:4343");
    let per_step_samples = 2.0 * 4.0 * 32.0;
    assert_eq!((lt["steps"].as_u64(), lt["first_step"].as_u64(), lt["last_step"].as_u64()), (Some(3), Some(1), Some(3)), "{lt:#}");
    assert_eq!(lt["samples"].as_f64(), Some(3.0 * per_step_samples), "{lt:#}");
    assert_eq!(lt["tokens"].as_f64(), Some(3.0 * per_step_samples * 4096.0), "{lt:#}");
    s.stop().await;
}
