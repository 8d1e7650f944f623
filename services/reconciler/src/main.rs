fn main() {
    plumbline_runtime::service_main::<plumbline_reconciler::ReconcilerConfig, _, _, _>(
        "plumbline-reconciler",
        "Plumbline reconciler: periodic sweeps of every entity",
        plumbline_reconciler::run,
    );
}
