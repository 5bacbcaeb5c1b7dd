//! In-process inference rate of each runtime on a builtin model: the ceiling
//! any HTTP server can reach with one row per request.
//!
//! Usage: `runtime_rate [MODEL] [SECONDS]` → one JSON line per runtime.

use std::time::{Duration, Instant};

use modelship_server::builtin;
use modelship_server::engine::warm_up_inputs;
use modelship_server::runtime::{self, RuntimeChoice, RuntimeOptions};

fn main() {
    let model = std::env::args().nth(1).unwrap_or_else(|| "iris".into());
    let seconds: f64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let artifact = builtin::artifact(&model).expect("a builtin model name");
    for runtime in [RuntimeChoice::Tract, RuntimeChoice::Onnxruntime] {
        let options = RuntimeOptions {
            runtime,
            ort_library: None,
            intra_op_threads: Some(1),
        };
        let backend = match runtime::load(&artifact, &options) {
            Ok(b) => b,
            Err(e) => {
                println!(r#"{{"runtime":"{runtime:?}","error":{:?}}}"#, e.to_string());
                continue;
            }
        };
        let inputs = warm_up_inputs(backend.signature());
        let budget = Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < budget {
            backend.infer(&inputs).expect("inference");
            n += 1;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        println!(
            r#"{{"runtime":"{}","model":"{model}","inferences_per_second":{rate:.0}}}"#,
            backend.platform()
        );
    }
}
