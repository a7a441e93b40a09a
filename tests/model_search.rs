//! Where the default model is found (`NUCSEG_MODEL_DIR`, the user cache, the checkout), and
//! with the `download` feature, fetching it over HTTP from a server this test runs on
//! 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};

use nucseg::{
    backend::BackendKind,
    pretrained::{
        default_model, model_search_path, shipped_dcgmm, BundleNormalizer, DEFAULT_DCGMM_FILES,
        DEFAULT_MODEL_FILES,
    },
    stain::NormalizerKind,
};

fn checkout_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn scratch(name: &str) -> common::TempDir {
    common::tmp_dir(&format!("search-{name}"))
}

fn copy_model_into(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (file, _) in DEFAULT_MODEL_FILES {
        std::fs::copy(checkout_models().join(file), dir.join(file)).unwrap();
    }
}

/// The environment is process-wide: every check that sets a variable is in this one test.
#[test]
fn the_model_dir_variable_comes_first_then_the_cache_then_the_checkout() {
    let device = BackendKind::Cpu.device().unwrap();
    let root = scratch("order");
    let explicit = root.join("explicit");
    let cache_home = root.join("cache-home");
    std::env::set_var("XDG_CACHE_HOME", &cache_home);
    std::env::set_var("NUCSEG_MODEL_DIR", &explicit);
    let cache = cache_home.join("nucseg").join("models");
    if cfg!(all(unix, not(target_os = "macos"))) {
        assert_eq!(
            model_search_path(),
            vec![explicit.clone(), cache.clone(), checkout_models()]
        );
    }

    // Nothing in the explicit folder or the cache: the checkout's models/ is used.
    let bundle = default_model(&device).unwrap();
    assert_eq!(bundle.path.parent(), Some(checkout_models().as_path()));

    if cfg!(all(unix, not(target_os = "macos"))) {
        // A copy in the cache wins over the checkout.
        copy_model_into(&cache);
        let bundle = default_model(&device).unwrap();
        assert_eq!(bundle.path.parent(), Some(cache.as_path()));
    }

    // A copy in NUCSEG_MODEL_DIR wins over both; a damaged one there is an error, not a
    // silent fall-back to another folder.
    copy_model_into(&explicit);
    let bundle = default_model(&device).unwrap();
    assert_eq!(bundle.path.parent(), Some(explicit.as_path()));
    let config = explicit.join(DEFAULT_MODEL_FILES[1].0);
    std::fs::write(&config, b"{}").unwrap();
    let err = default_model(&device).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");

    // The shipped DCGMM is found the same way, and its files are checked whenever it
    // serves by default: a stale template there (another image's colours) is refused.
    assert_eq!(
        shipped_dcgmm(true).unwrap(),
        checkout_models().join(DEFAULT_DCGMM_FILES[0].0)
    );
    for (file, _) in DEFAULT_DCGMM_FILES {
        std::fs::copy(checkout_models().join(file), explicit.join(file)).unwrap();
    }
    assert_eq!(
        shipped_dcgmm(true).unwrap(),
        explicit.join(DEFAULT_DCGMM_FILES[0].0)
    );
    let template = explicit.join(DEFAULT_DCGMM_FILES[2].0);
    let text = std::fs::read_to_string(&template).unwrap();
    let first_digit = text.find(|c: char| c.is_ascii_digit()).unwrap();
    let stale = format!("{}9{}", &text[..first_digit], &text[first_digit..]);
    std::fs::write(&template, stale).unwrap();
    for err in [
        shipped_dcgmm(true).unwrap_err().to_string(),
        BundleNormalizer::for_training(NormalizerKind::Dcgmm, None, None, &device)
            .unwrap_err()
            .to_string(),
    ] {
        assert!(
            err.contains("checksum mismatch") && err.contains("dcgmm-kumar.template.json"),
            "{err}"
        );
        assert!(err.contains("name the network explicitly"), "{err}");
    }
    // With a template of the user's own, the shipped one is not read, nor checked.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/sample/TCGA-21-5784-01Z-00-DX1_crop.png");
    assert!(
        BundleNormalizer::for_training(NormalizerKind::Dcgmm, Some(&sample), None, &device).is_ok()
    );
    assert_eq!(
        shipped_dcgmm(false).unwrap(),
        explicit.join(DEFAULT_DCGMM_FILES[0].0)
    );

    std::env::remove_var("NUCSEG_MODEL_DIR");
    std::env::remove_var("XDG_CACHE_HOME");
    std::fs::remove_dir_all(&root).ok();
}

#[cfg(feature = "download")]
mod download {
    use std::{
        collections::HashMap,
        io::{BufRead, BufReader, Write},
        net::TcpListener,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
    };

    use super::*;
    use nucseg::pretrained::{default_model_in, download_default_model, verify_default_model};

    /// Serves `files` over HTTP/1.1 on 127.0.0.1 (404 for other paths) for at most
    /// `max_requests` requests; returns the base URL and the request counter.
    fn serve(files: HashMap<String, Vec<u8>>, max_requests: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/models", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(max_requests) {
                let Ok(mut stream) = stream else { continue };
                seen.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                // Skip the headers.
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("");
                let name = path.rsplit('/').next().unwrap_or("");
                let (status, body) = match files.get(name) {
                    Some(b) if path.starts_with("/models/") => ("200 OK", b.clone()),
                    _ => ("404 Not Found", b"not here".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        (url, count)
    }

    fn model_files() -> HashMap<String, Vec<u8>> {
        DEFAULT_MODEL_FILES
            .iter()
            .map(|(f, _)| {
                (
                    f.to_string(),
                    std::fs::read(checkout_models().join(f)).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn downloads_the_model_into_the_cache_checking_every_file() {
        let device = BackendKind::Cpu.device().unwrap();
        let scratch = scratch("download");
        let dir = scratch.join("cache");

        // A server with a corrupted weight file: refused, and nothing is left that looks
        // like the weights.
        let mut bad = model_files();
        bad.get_mut(DEFAULT_MODEL_FILES[0].0).unwrap()[1000] ^= 0xff;
        let (url, _) = serve(bad, 8);
        let err = download_default_model(&url, &dir).unwrap_err().to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("127.0.0.1"),
            "{err}"
        );
        assert!(!dir.join(DEFAULT_MODEL_FILES[0].0).exists());
        let hidden: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "temporary files left: {hidden:?}");

        // A server without the files: a clear error naming the address.
        let (url, _) = serve(HashMap::new(), 4);
        let err = download_default_model(&url, &dir).unwrap_err().to_string();
        assert!(err.contains("404") && err.contains(&url), "{err}");

        // The real files: downloaded, verified, loadable.
        let (url, requests) = serve(model_files(), 8);
        download_default_model(&url, &dir).unwrap();
        verify_default_model(&dir).unwrap();
        let bundle = default_model_in(&dir, &device).unwrap();
        assert!(bundle.normalizer.is_some());
        // Files already there with the right checksum are not fetched again.
        let before = requests.load(Ordering::SeqCst);
        download_default_model(&url, &dir).unwrap();
        assert_eq!(requests.load(Ordering::SeqCst), before);
        std::fs::remove_dir_all(dir.parent().unwrap()).ok();
    }
}
