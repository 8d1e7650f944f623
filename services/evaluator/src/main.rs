fn main() {
    plumbline_runtime::service_main::<plumbline_evaluator::EvaluatorConfig, _, _, _>(
        "plumbline-evaluator",
        "Plumbline evaluator: entity events to verdicts",
        plumbline_evaluator::run,
    );
}
