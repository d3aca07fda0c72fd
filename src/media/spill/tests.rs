use std::convert::Infallible;

use futures_util::stream;
use http_body::Frame;
use http_body_util::StreamBody;

use super::*;

fn chunks(sizes: &[usize]) -> (Vec<u8>, Vec<Bytes>) {
    let mut all = Vec::new();
    let mut out = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let c: Vec<u8> = (0..n).map(|j| (i * 31 + j * 7) as u8).collect();
        all.extend_from_slice(&c);
        out.push(Bytes::from(c));
    }
    (all, out)
}

fn body(
    parts: Vec<Bytes>,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    StreamBody::new(stream::iter(
        parts
            .into_iter()
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    ))
}

/// Lines of this process's memory maps that name a file in `dir`.
fn maps_in(dir: &Path) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let dir = dir.to_str().unwrap();
    maps.lines().filter(|l| l.contains(dir)).count()
}

#[tokio::test]
async fn small_body_stays_in_memory() {
    let (all, parts) = chunks(&[100, 200, 50]);
    let dir = tempfile::tempdir().unwrap();
    let s = collect(body(parts), 10_000, 1000, Some(dir.path()))
        .await
        .unwrap();
    assert!(!s.is_spilled());
    assert_eq!(&*s, &all[..]);
    assert_eq!(s.len(), 350);
    assert_eq!(maps_in(dir.path()), 0);
    assert_eq!(s.into_bytes(), Bytes::from(all));
}

#[tokio::test]
async fn exactly_the_threshold_stays_in_memory_one_more_byte_spills() {
    let (all, parts) = chunks(&[600, 400]);
    let s = collect(body(parts), 10_000, 1000, None).await.unwrap();
    assert!(!s.is_spilled());
    assert_eq!(&*s, &all[..]);

    let (all, parts) = chunks(&[600, 400, 1]);
    let s = collect(body(parts), 10_000, 1000, None).await.unwrap();
    assert!(s.is_spilled());
    assert_eq!(&*s, &all[..]);
}

#[tokio::test]
async fn large_body_is_spilled_to_a_mapped_unnamed_file_in_dir() {
    let (all, parts) = chunks(&[4096, 70_000, 1, 30_000]);
    let dir = tempfile::tempdir().unwrap();
    let s = collect(body(parts), 1 << 20, 8192, Some(dir.path()))
        .await
        .unwrap();
    assert!(s.is_spilled());
    assert_eq!(s.len(), all.len());
    assert_eq!(&*s, &all[..]);
    // The file has no name in the directory, but the mapping is of a file there.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(maps_in(dir.path()) >= 1);
    let b = s.into_bytes();
    let slice = b.slice(4096..4100);
    drop(b);
    // The mapping lives as long as any Bytes of it.
    assert_eq!(&slice[..], &all[4096..4100]);
    assert!(maps_in(dir.path()) >= 1);
    drop(slice);
    assert_eq!(maps_in(dir.path()), 0);
}

#[tokio::test]
async fn over_max_fails_and_stops_reading() {
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = read.clone();
    let parts = (0..100).map(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![7u8; 1000])))
    });
    let err = collect(StreamBody::new(stream::iter(parts)), 5000, 2000, None)
        .await
        .unwrap_err();
    assert!(matches!(err, SpillError::TooLarge { limit: 5000 }), "{err}");
    // Chunk 6 passes the limit; nothing after it is pulled.
    assert_eq!(read.load(std::sync::atomic::Ordering::SeqCst), 6);

    // Exactly max is fine.
    let (_, parts) = chunks(&[2500, 2500]);
    assert_eq!(
        collect(body(parts), 5000, 2000, None).await.unwrap().len(),
        5000
    );
}

#[tokio::test]
async fn a_size_hint_over_max_fails_before_reading() {
    let body = http_body_util::Full::new(Bytes::from(vec![1u8; 100]));
    let err = collect(body, 99, 10, None).await.unwrap_err();
    assert!(matches!(err, SpillError::TooLarge { limit: 99 }));
}

#[tokio::test]
async fn body_error_is_an_error() {
    for before in [1usize, 5000] {
        let items: Vec<Result<Frame<Bytes>, String>> = vec![
            Ok(Frame::data(Bytes::from(vec![1u8; before]))),
            Err("connection reset".to_owned()),
        ];
        let err = collect(StreamBody::new(stream::iter(items)), 1 << 20, 1000, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SpillError::Body(ref m) if m == "connection reset"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn trailers_are_ignored_and_empty_body_is_empty() {
    let items: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"abc"))),
        Ok(Frame::trailers(http::HeaderMap::new())),
    ];
    let s = collect(StreamBody::new(stream::iter(items)), 10, 1, None)
        .await
        .unwrap();
    assert!(s.is_spilled());
    assert_eq!(&*s, b"abc");
    let s = collect(body(Vec::new()), 10, 0, None).await.unwrap();
    assert!(s.is_empty() && !s.is_spilled());
}

#[tokio::test]
async fn a_missing_spill_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let (_, parts) = chunks(&[10, 10]);
    let err = collect(body(parts), 100, 5, Some(&missing))
        .await
        .unwrap_err();
    assert!(matches!(err, SpillError::Io(_)), "{err}");
}

/// A real hyper `Incoming` body over a 127.0.0.1 connection, chunked, spilled; and a
/// connection that closes mid-body is a body error.
#[tokio::test]
async fn hyper_incoming_over_a_loopback_connection() {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (expected, _) = chunks(&[30_000, 30_000, 30_000]);
    let server = tokio::spawn(async move {
        for truncate in [false, true] {
            let (tcp, _) = listener.accept().await.unwrap();
            if truncate {
                use tokio::io::AsyncWriteExt as _;
                let mut tcp = tcp;
                let mut buf = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
                tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 50000\r\n\r\nonly this")
                    .await
                    .unwrap();
                drop(tcp);
                continue;
            }
            let svc = service_fn(|_req| async {
                let (_, parts) = chunks(&[30_000, 30_000, 30_000]);
                Ok::<_, Infallible>(hyper::Response::new(body(parts)))
            });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await
                .unwrap();
        }
    });
    for truncate in [false, true] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("/")
            .header("host", "127.0.0.1")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let got = collect(resp.into_body(), 1 << 20, 10_000, Some(dir.path())).await;
        if truncate {
            assert!(matches!(got, Err(SpillError::Body(_))), "{got:?}");
        } else {
            let s = got.unwrap();
            assert!(s.is_spilled());
            assert_eq!(&*s, &expected[..]);
        }
    }
    server.await.unwrap();
}
