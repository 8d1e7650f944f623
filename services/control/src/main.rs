fn main() {
    plumbline_telemetry::service_main::<plumbline_control::ControlConfig, _, _, _>("plumbline-control", "Plumbline control plane (gRPC)", plumbline_control::run);
}
