fn main() {
    plumbline_telemetry::service_main::<plumbline_evaluator::EvaluatorConfig, _, _, _>("plumbline-evaluator", "Plumbline evaluator: entity events to verdicts", plumbline_evaluator::run);
}
