fn main() {
    plumbline_runtime::service_main::<plumbline_actuator::ActuatorConfig, _, _, _>(
        "plumbline-actuator",
        "Plumbline actuator: failing verdicts to remediations",
        plumbline_actuator::run,
    );
}
