//! `plumbline-actuator`'s `main` (services/actuator/src/main.rs), for the end-to-end tests.
fn main() {
    plumbline_runtime::service_main::<plumbline_actuator::ActuatorConfig, _, _, _>(
        "plumbline-actuator",
        "Plumbline actuator: failing verdicts to remediations",
        plumbline_actuator::run,
    );
}
