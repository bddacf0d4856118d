//! `container-unpack`: unpacks one layer, confined (see `container_image::unpack::child`).

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match container_image::unpack::child::main(&args) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
