//! Every queue message as a consumer decodes it: `proto::Envelope::decode`
//! (the AMQP consumer's `to_delivery`). Properties: a decoded envelope
//! re-encodes to bytes that decode to the same envelope, whose encoding is
//! then stable; its job names a queue and a subject.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::Envelope;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::decode(data) else {
        return;
    };
    let bytes = envelope.encode();
    let again = Envelope::decode(&bytes).expect("an encoded envelope decodes");
    assert_eq!(again, envelope);
    assert_eq!(again.encode(), bytes);
    let job = &envelope.job;
    assert!(!job.queue().is_empty());
    let _ = (job.subject_id(), job.name());
});
