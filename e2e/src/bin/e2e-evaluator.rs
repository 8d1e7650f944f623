//! `plumbline-evaluator`'s `main` (services/evaluator/src/main.rs), for the end-to-end tests.
fn main() {
    plumbline_runtime::service_main::<plumbline_evaluator::EvaluatorConfig, _, _, _>(
        "plumbline-evaluator",
        "Plumbline evaluator: entity events to verdicts",
        plumbline_evaluator::run,
    );
}
