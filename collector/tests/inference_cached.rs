//! Issue 29 item 10: the prompt tokens a server served without computing them (prefix-cache
//! hits, KV received from a prefill instance) are read from vLLM's `prompt_tokens_by_source`
//! and SGLang's `cached_tokens`, so the aggregator can leave them out of prompt compute.

use kilowatch_collector::inference::{Engine, read_page};

#[test]
fn vllm_cache_hits_and_kv_transfers_are_cached_prompt_tokens() {
    let text = "# TYPE vllm:prompt_tokens_total counter\n\
                vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 1000\n\
                # TYPE vllm:prompt_tokens_by_source_total counter\n\
                vllm:prompt_tokens_by_source_total{engine=\"0\",model_name=\"m\",source=\"local_compute\"} 700\n\
                vllm:prompt_tokens_by_source_total{engine=\"0\",model_name=\"m\",source=\"local_cache_hit\"} 200\n\
                vllm:prompt_tokens_by_source_total{engine=\"0\",model_name=\"m\",source=\"external_kv_transfer\"} 100\n";
    let page = read_page(text, Engine::Vllm, None, "", None);
    let c = &page.models[&("m".to_owned(), String::new())];
    assert_eq!((c.prompt_tokens, c.prompt_cached_tokens), (Some(1000.0), Some(300.0)));
}

#[test]
fn sglang_cached_tokens_of_every_source_and_none_where_not_exposed() {
    let text = "# TYPE sglang:prompt_tokens_total counter\n\
                sglang:prompt_tokens_total{model_name=\"q\"} 500\n\
                # TYPE sglang:cached_tokens_total counter\n\
                sglang:cached_tokens_total{model_name=\"q\",cache_source=\"device\"} 30\n\
                sglang:cached_tokens_total{model_name=\"q\",cache_source=\"host\"} 20\n";
    let page = read_page(text, Engine::Sglang, None, "", None);
    let c = &page.models[&("q".to_owned(), String::new())];
    assert_eq!((c.prompt_tokens, c.prompt_cached_tokens), (Some(500.0), Some(50.0)));
    // A release without the counter: unknown, not 0 (the aggregator then charges every prompt token).
    let page = read_page("# TYPE sglang:prompt_tokens_total counter\nsglang:prompt_tokens_total{model_name=\"q\"} 500\n", Engine::Sglang, None, "", None);
    assert_eq!(page.models[&("q".to_owned(), String::new())].prompt_cached_tokens, None);
}
