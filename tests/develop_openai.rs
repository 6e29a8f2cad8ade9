//! The `openai:URL` generator against a local mock server: completions and chat
//! endpoints, servers that return fewer choices than asked, HTTP errors, and the
//! TRL-format pair export with its hook.

use mergec::develop::openai::OpenAiGenerator;
#[path = "common/mock_http.rs"]
mod mock_http;
use std::sync::{Arc, Mutex};

/// (path, JSON body) of each request the mock server saw.
type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A server that caps `n` at 2 and answers with `status`; records every request.
fn mock_server(status: u16) -> (String, Seen) {
    let seen: Seen = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    let url = mock_http::serve(move |path, req| {
        log.lock().unwrap().push((path.to_string(), req.clone()));
        let n = req["n"].as_u64().unwrap_or(1).min(2);
        let seed = req["seed"].as_u64().unwrap_or(0);
        let reply = if path.ends_with("/models") {
            serde_json::json!({"data": [{"id": "mock-model"}]})
        } else if path.ends_with("/chat/completions") {
            let c: Vec<_> = (0..n)
                .map(|i| serde_json::json!({"message": {"role": "assistant", "content": format!("chat {seed}.{i}")}}))
                .collect();
            serde_json::json!({"choices": c})
        } else {
            let c: Vec<_> = (0..n)
                .map(|i| serde_json::json!({"text": format!("text {seed}.{i}")}))
                .collect();
            serde_json::json!({"choices": c})
        };
        if status == 200 {
            (200, reply.to_string())
        } else {
            (status, "{\"error\": \"model overloaded\"}".to_string())
        }
    });
    (url, seen)
}

#[test]
fn completions_fill_n_from_servers_that_cap_it() {
    let (url, seen) = mock_server(200);
    let mut g = OpenAiGenerator::from_spec(&format!("openai:{url}"), None).unwrap();
    let out = g.sample("PROMPT", 5, 1.2, 40).unwrap();
    assert_eq!(
        out,
        [
            "text 40.0",
            "text 40.1",
            "text 41.0",
            "text 41.1",
            "text 42.0"
        ]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "/v1/models");
    assert_eq!(seen[1].0, "/v1/completions");
    assert_eq!(seen[1].1["prompt"], "PROMPT");
    assert_eq!(seen[1].1["model"], "mock-model");
    assert_eq!(seen[1].1["temperature"], 1.2);
    assert_eq!(g.id(), format!("openai:{url}#mock-model"));
}

#[test]
fn chat_endpoint_sends_one_user_message() {
    let (url, seen) = mock_server(200);
    let mut g =
        OpenAiGenerator::from_spec(&format!("openai-chat:{url}"), Some("m".into())).unwrap();
    assert_eq!(g.sample("P", 1, 0.7, 3).unwrap(), ["chat 3.0"]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "/v1/chat/completions");
    assert_eq!(seen[0].1["messages"][0]["content"], "P");
}

#[test]
fn errors_say_what_and_where() {
    let (url, _) = mock_server(503);
    let mut g = OpenAiGenerator::from_spec(&format!("openai:{url}"), Some("m".into())).unwrap();
    let e = g.sample("P", 1, 1.0, 0).unwrap_err();
    assert!(
        e.contains("HTTP 503") && e.contains("model overloaded") && e.contains("/completions"),
        "{e}"
    );
    let e = OpenAiGenerator::from_spec("openai:localhost:8000", None)
        .err()
        .unwrap();
    assert!(e.contains("http://"), "{e}");
    // Nothing listening.
    let mut g =
        OpenAiGenerator::from_spec("openai:http://127.0.0.1:9/v1", Some("m".into())).unwrap();
    let e = g.sample("P", 1, 1.0, 0).unwrap_err();
    assert!(e.contains("is the server running"), "{e}");
}

#[test]
fn pairs_are_exported_in_trl_format_and_the_hook_can_move_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut g =
        OpenAiGenerator::from_spec("openai:http://127.0.0.1:1/v1", Some("m".into())).unwrap();
    g.hook = Some("wc -l < {pairs} && echo 'endpoint: http://127.0.0.1:2/v1/'".into());
    let pairs = vec![
        ("p".to_string(), "good".to_string(), "bad".to_string()),
        ("p".to_string(), "good2".to_string(), "bad2".to_string()),
    ];
    let ex = g.export(&pairs, 1, dir.path()).unwrap();
    let text = std::fs::read_to_string(&ex.pairs_file).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"prompt": "p", "chosen": "good", "rejected": "bad"})
    );
    assert_eq!(ex.hook_output.lines().next().unwrap().trim(), "2");
    assert_eq!(ex.new_endpoint.as_deref(), Some("http://127.0.0.1:2/v1"));
    assert_eq!(g.base, "http://127.0.0.1:2/v1");
    // A hook that loads an adapter into the running server names it (vllm-lora.sh).
    g.hook = Some("echo loaded; echo 'model: mergec-iter2'".into());
    let ex = g.export(&pairs, 2, dir.path()).unwrap();
    assert_eq!(ex.new_model.as_deref(), Some("mergec-iter2"));
    assert_eq!(ex.new_endpoint, None);
    assert_eq!(g.model.as_deref(), Some("mergec-iter2"));
    assert_eq!(g.base, "http://127.0.0.1:2/v1");
    g.hook = Some("echo training failed >&2; exit 3".into());
    let e = g.export(&pairs, 2, dir.path()).unwrap_err();
    assert!(e.contains("training failed"), "{e}");
}

/// A generator with short timeouts and a small reply limit, for the fault servers.
fn impatient(url: &str) -> OpenAiGenerator {
    use mergec::develop::openai::HttpLimits;
    OpenAiGenerator::from_spec(&format!("openai:{url}"), Some("m".into()))
        .unwrap()
        .with_limits(HttpLimits {
            connect: std::time::Duration::from_secs(1),
            overall: std::time::Duration::from_secs(2),
            max_reply: 1 << 20,
        })
}

#[test]
fn servers_that_fail_hang_trickle_or_flood_end_in_bounded_time_with_a_clear_error() {
    // A 500 with a long body: the status and the start of the body, not a JSON error.
    let url = mock_http::serve(|_, _| (500, format!("internal error {}", "x".repeat(5000))));
    let e = impatient(&url).sample("P", 1, 1.0, 0).unwrap_err();
    assert!(
        e.starts_with(&format!("HTTP 500 from {url}/completions: internal error")),
        "{e}"
    );
    assert!(e.len() < 400, "{e}");
    // A 500 while listing models (no --generator-model).
    let mut g = OpenAiGenerator::from_spec(&format!("openai:{url}"), None).unwrap();
    let e = g.sample("P", 1, 1.0, 0).unwrap_err();
    assert!(e.contains("HTTP 500") && e.contains("/models"), "{e}");
    for (fault, want) in [
        (mock_http::Fault::Hang, "timeout"),
        (mock_http::Fault::Trickle, "timeout"),
        (mock_http::Fault::Huge(64 << 20), "larger than"),
    ] {
        let url = mock_http::serve_fault(fault);
        let t0 = std::time::Instant::now();
        let e = impatient(&url).sample("P", 1, 1.0, 0).unwrap_err();
        let took = t0.elapsed().as_secs_f64();
        eprintln!("{fault:?}: {took:.2} s: {e}");
        assert!(e.contains(want) && e.contains(&url), "{fault:?}: {e}");
        assert!(took < 5.0, "{fault:?} took {took} s");
    }
}

#[test]
fn requests_carry_the_loops_grammar_in_the_servers_dialect() {
    use mergec::develop::openai::RemoteGrammar;
    for (setting, key) in [
        (RemoteGrammar::Gbnf, "grammar"),
        (RemoteGrammar::Lark, "structured_outputs"),
        // The mock answers `/version` as vLLM does: auto picks Lark.
        (RemoteGrammar::Auto, "structured_outputs"),
    ] {
        let (url, seen) = mock_server(200);
        let mut g = OpenAiGenerator::from_spec(&format!("openai:{url}"), Some("m".into())).unwrap();
        g.grammar = setting;
        g.sample("P", 1, 0.7, 3).unwrap();
        let seen = seen.lock().unwrap();
        let (_, body) = seen
            .iter()
            .find(|(p, _)| p.ends_with("/completions"))
            .expect("a completion request");
        let text = match key {
            "grammar" => body["grammar"].as_str().expect("GBNF text"),
            _ => body["structured_outputs"]["grammar"]
                .as_str()
                .expect("Lark text"),
        };
        let start = if key == "grammar" {
            "root ::="
        } else {
            "start:"
        };
        assert!(
            text.contains(start) && text.contains("\"models\""),
            "{setting:?}: {text}"
        );
    }
    let (url, seen) = mock_server(200);
    let mut g = OpenAiGenerator::from_spec(&format!("openai:{url}"), Some("m".into())).unwrap();
    g.sample("P", 1, 0.7, 3).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "no grammar and no probing unless asked");
    assert!(seen[0].1.get("grammar").is_none() && seen[0].1.get("structured_outputs").is_none());
}
