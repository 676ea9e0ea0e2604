//! instant-acme's HTTP client, on reqwest (OpenSSL, already in Kiln's tree),
//! remembering the `Retry-After` of each URL's last response so the driver
//! can honour it with sub-second precision of its own clock.

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http_body_util::BodyExt;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct Transport {
    client: reqwest::Client,
    retry_after: Arc<Mutex<HashMap<String, Duration>>>,
}

impl Transport {
    /// `root_pem`: the CA's root to trust for its HTTPS API (None: system roots).
    pub fn new(root_pem: Option<&[u8]>, pool_size: usize) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(pool_size)
            .timeout(Duration::from_secs(60));
        if let Some(pem) = root_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Transport {
            client: builder.build()?,
            retry_after: Arc::default(),
        })
    }

    /// The `Retry-After` (delay-seconds) of the last response from `url`, consumed.
    pub fn take_retry_after(&self, url: &str) -> Option<Duration> {
        self.retry_after.lock().expect("lock").remove(url)
    }
}

impl HttpClient for Transport {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let client = self.client.clone();
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let url = parts.uri.to_string();
            let rsp = client
                .request(parts.method, &url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| Error::Other(Box::new(e)))?;
            let delay = rsp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            {
                let mut map = retry_after.lock().expect("lock");
                match delay {
                    Some(d) => {
                        map.insert(url, d);
                    }
                    None => {
                        map.remove(&url);
                    }
                }
            }
            let rsp: http::Response<reqwest::Body> = rsp.into();
            Ok(BytesResponse::from(rsp))
        })
    }
}
