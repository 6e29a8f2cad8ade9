//! A minimal local HTTP server for tests of OpenAI-compatible clients: each request's
//! path and JSON body go to a handler that returns the status and the reply body; and
//! servers that misbehave ([`serve_fault`]): hang, trickle bytes, or send a huge body.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

/// Serves until the test process ends; returns the base URL (`http://127.0.0.1:PORT/v1`).
pub fn serve(
    handler: impl Fn(&str, &serde_json::Value) -> (u16, String) + Send + 'static,
) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let (status, text) = handler(&path, &req);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    url
}

/// How a [`serve_fault`] server misbehaves after reading a request.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Accepts and reads the request, then never answers.
    Hang,
    /// Announces a reply and sends one byte of it every 200 ms.
    Trickle,
    /// A well-formed 200 reply of this many bytes.
    Huge(usize),
}

/// A server that misbehaves as `fault` says on every request; returns the base URL.
pub fn serve_fault(fault: Fault) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                match fault {
                    Fault::Hang => std::thread::sleep(std::time::Duration::from_secs(3600)),
                    Fault::Trickle => {
                        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
                        for _ in 0..100000 {
                            if s.write_all(b" ").is_err() {
                                break;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(200));
                        }
                    }
                    Fault::Huge(n) => {
                        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                        let chunk = vec![b' '; 1 << 16];
                        let mut left = n;
                        while left > 0 {
                            let k = left.min(chunk.len());
                            if s.write_all(&chunk[..k]).is_err() {
                                break;
                            }
                            left -= k;
                        }
                    }
                }
            });
        }
    });
    url
}
