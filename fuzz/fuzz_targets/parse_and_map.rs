//! Fuzzes ingest's parse-and-map step: any bytes, under any event name, must map or be refused
//! with an error — never panic, never loop. The first input byte picks the event (every event
//! ingest understands, plus one it does not); the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plumbline_ingest::{parse_and_map, OTHER_KNOWN_EVENTS, REPOSITORY_EVENTS};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let events: Vec<&str> = REPOSITORY_EVENTS.iter().chain(OTHER_KNOWN_EVENTS).copied().chain(["star"]).collect();
    let event = events[selector as usize % events.len()];
    if let Ok(plumbline_ingest::Mapped::Plan(plan)) = parse_and_map("github", event, "fuzz-delivery", body) {
        // Every record names an entity with an id (the Kafka key).
        for ev in &plan.events {
            assert!(ev.entity_ref().is_ok(), "record without an entity");
        }
    }
});
