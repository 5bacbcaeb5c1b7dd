//! The gRPC benchmark's load generator: a closed loop of `ModelInfer` calls
//! over tonic's own client (HTTP/2, the protocol's `inference` package from
//! the same `.proto` the server compiles), so it works against any v2 gRPC
//! server: modelship, MLServer, KServe, Triton, the empty tonic service.
//!
//! Each of `--clients` workers sends the next call as soon as its previous
//! answer is in. Workers get one HTTP/2 connection each unless
//! `--connections` is smaller (then they share them round robin, multiplexed
//! as streams). Calls finished during `--warmup` are not counted; of those
//! finished in the next `--seconds`, OK ones go into the latency histogram
//! and the rate, any other status counts as an error (the first is printed
//! on stderr). Calls still in flight at the end are dropped, not counted.
//!
//! `--method live` calls `ServerLive` instead (an empty message each way, no
//! model work): against the same server it separates the cost of the
//! transport and the middleware from that of the inference handler
//! (`bench/grpc_cost.py`).
//!
//! One tokio thread by default (`--threads`), so pinned to one core with
//! taskset it is one core's worth of load, as the benchmark's other load
//! generators are. It prints one JSON object:
//! `{"rps", "p50_ms", "p99_ms", "errors", "calls", "all_calls", "clients", "connections", "seconds"}`
//! (`all_calls`: every call answered, the warm-up's too, for a server's CPU
//! time per call over the whole run).
//!
//! Usage: `grpc_load [--clients N] [--connections N] [--seconds S] [--warmup S]
//! [--threads N] [--model NAME] [--method infer|live] HOST:PORT`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use modelship_server::protocol::grpc::pb;
use pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(about = "A closed-loop gRPC ModelInfer load generator")]
struct Args {
    /// The server, HOST:PORT (plaintext HTTP/2).
    target: String,
    /// Concurrent callers, each waiting for its answer before the next call.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// HTTP/2 connections the callers share round robin (0: one per caller).
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Seconds of calls before the measured ones, not counted.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Tokio worker threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The model called.
    #[arg(long, default_value = "iris")]
    model: String,
    /// The method called: `infer` (ModelInfer, one Iris row) or `live` (ServerLive).
    #[arg(long, value_enum, default_value_t = Method::Infer)]
    method: Method,
}

/// The call the workers repeat.
#[derive(Clone, Copy, ValueEnum)]
enum Method {
    /// `ModelInfer` with [`request`].
    Infer,
    /// `ServerLive`: no model work, the transport and the middleware alone.
    Live,
}

/// The call every worker repeats: one Iris row of four typed FP32 values,
/// as the ghz request of `bench/bench_grpc.py`.
fn request(model: &str) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.to_string(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            contents: Some(pb::InferTensorContents {
                fp32_contents: vec![6.9, 3.1, 5.4, 2.1],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What one worker saw in the measured window.
struct Tally {
    latency_us: Histogram<u64>,
    errors: u64,
    first_error: Option<tonic::Status>,
    /// Every call answered before the stop, the warm-up's included.
    answered: u64,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One call of `method`; only its status matters to the tally.
async fn call_once(
    client: &mut GrpcInferenceServiceClient<Channel>,
    method: Method,
    call: &pb::ModelInferRequest,
) -> Result<(), tonic::Status> {
    match method {
        Method::Infer => client.model_infer(call.clone()).await.map(drop),
        Method::Live => client.server_live(pb::ServerLiveRequest {}).await.map(drop),
    }
}

async fn worker(
    mut client: GrpcInferenceServiceClient<Channel>,
    method: Method,
    call: pb::ModelInferRequest,
    measure_from: Instant,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally {
        latency_us: histogram(),
        errors: 0,
        first_error: None,
        answered: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let result = call_once(&mut client, method, &call).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tally.answered += 1;
        if sent < measure_from {
            continue;
        }
        match result {
            Ok(_) => {
                let us = sent.elapsed().as_micros().max(1) as u64;
                tally.latency_us.saturating_record(us);
            }
            Err(status) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(status);
            }
        }
    }
    tally
}

async fn run(args: Args) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let clients = args.clients.max(1);
    let connections = match args.connections {
        0 => clients,
        n => n.min(clients),
    };
    let endpoint = Endpoint::from_shared(format!("http://{}", args.target))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(endpoint.connect().await?);
    }
    let call = request(&args.model);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let client = GrpcInferenceServiceClient::new(channels[i % connections].clone());
            let method = args.method;
            tokio::spawn(worker(
                client,
                method,
                call.clone(),
                measure_from,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep_until((measure_from + Duration::from_secs_f64(args.seconds)).into()).await;
    stop.store(true, Ordering::Relaxed);
    let measured = measure_from.elapsed().as_secs_f64();

    let mut latency = histogram();
    let mut errors = 0;
    let mut first_error = None;
    let mut answered = 0;
    for w in workers {
        let tally = w.await?;
        latency.add(&tally.latency_us)?;
        errors += tally.errors;
        answered += tally.answered;
        if first_error.is_none() {
            first_error = tally.first_error;
        }
    }
    if let Some(status) = first_error {
        eprintln!("first error: {:?}: {}", status.code(), status.message());
    }
    let ok = latency.len();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(serde_json::json!({
        "rps": ok as f64 / measured,
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "errors": errors,
        "calls": ok + errors,
        "all_calls": answered,
        "clients": clients,
        "connections": connections,
        "seconds": measured,
    }))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("grpc_load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
