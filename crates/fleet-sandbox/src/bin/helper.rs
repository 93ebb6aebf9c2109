//! `fleet-sandbox-helper --policy <json> -- <program> [args…]`: confines itself per the
//! policy, then executes the program. Started by fleet's supervisor, not by people.

fn main() {
    fleet_sandbox::helper_main(std::env::args_os().skip(1).collect())
}
