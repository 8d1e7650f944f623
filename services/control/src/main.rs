fn main() {
    plumbline_runtime::service_main::<plumbline_control::ControlConfig, _, _, _>(
        "plumbline-control",
        "Plumbline control plane (gRPC)",
        plumbline_control::run,
    );
}
