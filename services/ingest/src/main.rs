fn main() {
    plumbline_runtime::service_main::<plumbline_ingest::IngestConfig, _, _, _>(
        "plumbline-ingest",
        "Plumbline ingest: GitHub webhooks to entity events",
        plumbline_ingest::run,
    );
}
