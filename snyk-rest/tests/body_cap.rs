//! The byte cap on every body read of a Snyk answer (`read_body`, `MAX_BODY_BYTES`): a body
//! announced or found to be over the cap is refused with `RestError::TooLarge`, one exactly at
//! the cap is read, and a body streamed without end is abandoned as soon as it passes the cap.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use secrecy::SecretString;
use snyk_rest::{MAX_BODY_BYTES, OrgAttributes, RestClient, RestError, read_body};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use url::Url;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

const LIMIT: usize = 64 * 1024;

/// `GET url` with a plain client; the answer's body not read yet.
async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

/// A server that answers one request with `chunks` (`Transfer-Encoding: chunked`, so no
/// `Content-Length`) and reports how many body bytes it got written before the client went away
/// (`Err`) or after it sent them all (`Ok`).
async fn chunked_server(
    chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> (String, tokio::task::JoinHandle<Result<usize, usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        read_request_head(&mut socket).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.api+json\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut sent = 0;
        for chunk in chunks {
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            if socket.write_all(&frame).await.is_err() {
                return Err(sent);
            }
            sent += chunk.len();
        }
        socket.write_all(b"0\r\n\r\n").await.map_err(|_| sent)?;
        Ok(sent)
    });
    (url, task)
}

async fn read_request_head(socket: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client closed before its request was complete");
        head.extend_from_slice(&buf[..n]);
    }
}

/// `total` bytes in chunks of at most `size`.
fn chunks_of(total: usize, size: usize) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    (0..total)
        .step_by(size)
        .map(move |start| vec![b'x'; size.min(total - start)])
}

#[tokio::test]
async fn a_body_announced_over_the_cap_is_refused_and_one_at_the_cap_is_read() {
    let server = MockServer::start().await;
    for (length, expected) in [
        (LIMIT + 1, Err(RestError::TooLarge { limit: LIMIT })),
        (LIMIT, Ok(LIMIT)),
        (0, Ok(0)),
    ] {
        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; length]))
            .mount(&server)
            .await;
        let response = get(&server.uri()).await;
        assert_eq!(response.content_length(), Some(length as u64));
        let body = read_body(response, LIMIT).await;
        assert_eq!(body.map(|b| b.len()), expected, "a body of {length} bytes");
    }
}

/// `Content-Length` over the cap is enough: the read does not wait for a byte of the body (this
/// server never sends one, and keeps the connection open until the client closes it).
#[tokio::test]
async fn a_body_announced_over_the_cap_is_refused_before_any_of_it_arrives() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        read_request_head(&mut socket).await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", LIMIT + 1);
        socket.write_all(head.as_bytes()).await.unwrap();
        // Until the client hangs up.
        while socket.read(&mut [0u8; 64]).await.is_ok_and(|n| n > 0) {}
    });

    let body = tokio::time::timeout(Duration::from_secs(5), async {
        read_body(get(&url).await, LIMIT).await
    })
    .await
    .expect("refused without waiting for the body");

    assert_eq!(body, Err(RestError::TooLarge { limit: LIMIT }));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the connection was closed")
        .unwrap();
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_is_refused_and_one_at_the_cap_is_read() {
    for (length, expected) in [
        (LIMIT + 1, Err(RestError::TooLarge { limit: LIMIT })),
        (LIMIT, Ok(LIMIT)),
    ] {
        let (url, _server) = chunked_server(chunks_of(length, 1000)).await;
        let response = get(&url).await;
        assert_eq!(response.content_length(), None, "no Content-Length");
        let body = read_body(response, LIMIT).await;
        assert_eq!(body.map(|b| b.len()), expected, "a body of {length} bytes");
    }
}

/// A server that would stream 256 MiB: the read returns once the cap is passed, and the server
/// then finds the connection closed long before it sent everything. The read keeps no more than
/// the cap plus one chunk, so it never holds what the server pushed.
#[tokio::test]
async fn an_endless_body_is_abandoned_as_soon_as_it_passes_the_cap() {
    const PLANNED: usize = 256 * 1024 * 1024;
    let (url, server) = chunked_server(chunks_of(PLANNED, 16 * 1024)).await;

    let body = read_body(get(&url).await, LIMIT).await;

    assert_eq!(body, Err(RestError::TooLarge { limit: LIMIT }));
    let sent = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server saw the connection close")
        .unwrap();
    // What the server got written before it noticed: the cap plus what the kernel's socket
    // buffers took on both sides (a few MiB on loopback), never the planned body.
    match sent {
        Err(sent) => assert!(sent < 32 * 1024 * 1024, "sent {sent} bytes"),
        Ok(sent) => panic!("the whole body of {sent} bytes was sent"),
    }
}

/// A JSON:API document of exactly `length` bytes (an empty page with an error's `detail` padded),
/// answered with `status`.
fn padded(status: u16, length: usize) -> ResponseTemplate {
    let mut doc = br#"{"data":[],"errors":[{"detail":""#.to_vec();
    doc.resize(length - br#""}]}"#.len(), b'x');
    doc.extend_from_slice(br#""}]}"#);
    assert_eq!(doc.len(), length);
    ResponseTemplate::new(status).set_body_raw(doc, "application/vnd.api+json")
}

#[tokio::test]
async fn pages_and_error_documents_are_read_within_the_cap() {
    let server = MockServer::start().await;
    let client = RestClient::new(
        Url::parse(&server.uri()).unwrap(),
        "2024-05-31",
        Duration::from_secs(10),
        &[],
    )
    .unwrap();
    // `get_page` of a JSON:API document of `length` bytes answered with `status`.
    let answer = async |status: u16, length: usize| {
        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(padded(status, length))
            .mount(&server)
            .await;
        let token = SecretString::from("tok".to_owned());
        client
            .get_page::<OrgAttributes>(&client.url("/orgs", 100, &[]), &token, &[])
            .await
    };
    // Padded just past the cap, as a page and as an error document.
    for status in [200, 404, 400] {
        let err = answer(status, MAX_BODY_BYTES + 1).await.unwrap_err();
        assert_eq!(
            err,
            RestError::TooLarge {
                limit: MAX_BODY_BYTES
            },
            "{status}"
        );
        assert!(!err.is_retryable());
        assert_eq!(err.status_label(), "error");
        assert!(err.to_string().contains("4194304 bytes"), "{err}");
    }
    // At the cap it is read: the page parses (its `errors` member is ignored).
    let page = answer(200, MAX_BODY_BYTES).await.unwrap();
    assert!(page.data.is_empty() && page.next.is_none());
}
