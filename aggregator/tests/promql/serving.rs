//! An inference server's `inference` points, for the tests whose site must serve a model
//! (the demo's fleet needs a site of 24 nodes or more).

/// A vLLM server `s1` of model `m` for `tenant` on `node`'s GPU 0, its counters every `step_s`
/// seconds from `from_s` to `to_s` (Unix seconds): 4,000 prompt and 1,000 generated tokens and
/// two requests a step.
pub fn lines(node: &str, tenant: &str, from_s: i64, to_s: i64, step_s: i64) -> String {
    let mut lines = String::new();
    for (k, t) in (from_s..=to_s).step_by(step_s as usize).enumerate() {
        let n = k as f64;
        lines.push_str(&format!(
            "inference,node={node},server=s1,engine=vllm,model=m,tenant={tenant} prompt_tokens={},generation_tokens={},requests={},gpus=\"0\" {t}\n",
            n * 4000.0,
            n * 1000.0,
            n * 2.0
        ));
    }
    lines
}
