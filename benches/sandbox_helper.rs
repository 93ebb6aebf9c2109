//! The sandbox helper for the benchmarks (the same as `fleet-sandbox-helper`).

fn main() {
    fleet_sandbox::helper_main(std::env::args_os().skip(1).collect())
}
