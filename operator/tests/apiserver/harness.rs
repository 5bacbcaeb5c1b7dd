//! Test harness: a namespace per test, the CRD installed, operator processes, polling.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, CustomResourceExt, Resource};
use modelship_operator::crd::ModelDeployment;
use serde::de::DeserializeOwned;

/// The image the test operators put in pods (control-plane mode never runs them).
pub const SERVER_IMAGE: &str = "modelship/server:integration-test";

const KUBECONFIG_ENV: &str = "MODELSHIP_TEST_KUBECONFIG";

/// A cluster and a fresh namespace for one test.
pub struct TestCluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub namespace: String,
}

impl TestCluster {
    /// Connects, installs the CRD and creates a namespace; `None` (with the reason printed)
    /// when no cluster is configured.
    pub async fn get(test: &str) -> Option<Self> {
        let Some(kubeconfig) = std::env::var_os(KUBECONFIG_ENV).map(PathBuf::from) else {
            skip(
                test,
                &format!(
                    "{KUBECONFIG_ENV} is not set. Start a cluster with \
                     `make -f hack/cluster/cluster.mk cluster-up MODE=control-plane` and run \
                     `{KUBECONFIG_ENV}=$PWD/.cluster/kubeconfig cargo test -p modelship-operator --test apiserver`"
                ),
            );
            return None;
        };
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let kc = Kubeconfig::read_from(&kubeconfig)
            .unwrap_or_else(|e| panic!("{KUBECONFIG_ENV}={}: {e}", kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        let client = Client::try_from(config).expect("client");
        install_crd(&client).await;

        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let namespace = format!("it-{test}-{:05}", nanos % 100_000);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": namespace, "labels": {"modelship.io/integration-test": "true"}}
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create the test namespace");
        Some(Self {
            client,
            kubeconfig,
            namespace,
        })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// What `kubectl get RESOURCE` shows, as a meta.k8s.io Table.
    pub async fn table(&self, plural: &str) -> serde_json::Value {
        let path = format!(
            "/apis/modelship.io/v1alpha1/namespaces/{}/{plural}",
            self.namespace
        );
        let mut request = kube::core::Request::new(path)
            .list(&kube::api::ListParams::default())
            .unwrap();
        request.headers_mut().insert(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io"
                .parse()
                .unwrap(),
        );
        let text = self.client.request_text(request).await.expect("table");
        serde_json::from_str(&text).unwrap()
    }

    /// Deletes the namespace (the test passed; a failed test leaves it for inspection).
    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.namespace, &DeleteParams::background())
            .await;
    }
}

/// Says why a test did not run. Written to stderr directly, not with `eprintln!`, so that the
/// test harness's output capture does not hide it. Under `REQUIRE_NO_SKIP=1` (make test) a skip
/// fails the test instead, as in the shell suites' harness (hack/lib/harness.sh).
pub fn skip(test: &str, why: &str) {
    if std::env::var("REQUIRE_NO_SKIP").as_deref() == Ok("1") {
        panic!("{test} was skipped, and REQUIRE_NO_SKIP=1: {why}");
    }
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
}

async fn install_crd(client: &Client) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = ModelDeployment::crd();
    let name = crd.metadata.name.clone().unwrap();
    crds.patch(
        &name,
        &PatchParams::apply("modelship-integration-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the CRD");
    eventually(
        "the CRD to be established",
        Duration::from_secs(30),
        || async {
            let crd = crds.get(&name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        },
    )
    .await;
}

/// A ModelDeployment with `spec`.
pub fn model_deployment(name: &str, spec: serde_json::Value) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "modelship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

pub fn spec_hash(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("modelship.io/spec-hash")
        .cloned()
}

/// Polls `check` every 200ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An operator process watching the test's namespace; killed when dropped.
pub struct Operator {
    child: Option<Child>,
    log: PathBuf,
    metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl Operator {
    pub fn start(cluster: &TestCluster, extra: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let metrics_port = free_port();
        // MODELSHIP_TEST_OPERATOR_BIN runs another build, e.g. target/release/modelship-operator.
        let binary = std::env::var_os("MODELSHIP_TEST_OPERATOR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_modelship-operator")));
        let child = Command::new(binary)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("RUST_LOG", "info,modelship_operator=debug")
            .env_remove("MODELSHIP_WATCH_NAMESPACES")
            .arg(format!("--watch-namespaces={}", cluster.namespace))
            .arg(format!("--server-image={SERVER_IMAGE}"))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("start modelship-operator");
        Self {
            child: Some(child),
            log: dir.path().join("stderr.log"),
            metrics_port,
            _dir: dir,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        eventually(
            &format!("{needle:?} in the operator log"),
            timeout,
            || async { self.logs().contains(needle).then_some(()) },
        )
        .await;
    }

    /// The value of an unlabelled metric from the operator's /metrics.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let port = self.metrics_port;
        let body = tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .ok()?;
            let mut body = String::new();
            stream.read_to_string(&mut body).ok()?;
            Some(body)
        })
        .await
        .ok()??;
        body.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Whether /readyz answers 200.
    pub async fn ready(&self) -> bool {
        let port = self.metrics_port;
        tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            stream
                .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .ok()?;
            let mut body = String::new();
            stream.read_to_string(&mut body).ok()?;
            Some(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"))
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
    }

    /// Peak resident set size of the process (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// Kills the process at once (SIGKILL): it cannot release its Lease.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{}", self.logs());
        }
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
