//! The claim rule on one node's state: recorded claimers, decided answers, expiry of nothing
//! within a test's time.

use super::*;

fn ordered() -> (PeerId, PeerId) {
    let (a, b) = (PeerId::random(), PeerId::random());
    if lower(&a, &b) { (a, b) } else { (b, a) }
}

fn flat() -> FlatCid {
    cairn_ipld::cid::Digest::of(cairn_ipld::cid::Algorithm::Sha512, b"artifact").flat_cid()
}

#[test]
fn higher_id_defers_to_a_lower_claimer_heard_either_way() {
    let (low, high) = ordered();
    // `high` decides after `low` asked it while claiming.
    let claims = Claims::default();
    assert!(claims.claim(flat()));
    assert!(matches!(
        claims.answer(flat(), low, true),
        LocalAnswer::Claiming { decided: false }
    ));
    assert_eq!(
        claims.decide(flat(), high, &[], |_| false),
        Decision::Defer(low)
    );
    // `high` heard `low` claiming in its own ask.
    let claims = Claims::default();
    assert!(claims.claim(flat()));
    let heard = [(low, Heard::Claiming { decided: false })];
    assert_eq!(
        claims.decide(flat(), high, &heard, |_| false),
        Decision::Defer(low)
    );
    // `low` goes upstream though `high` claims, and then says so.
    let claims = Claims::default();
    assert!(claims.claim(flat()));
    claims.answer(flat(), high, true);
    assert_eq!(
        claims.decide(
            flat(),
            low,
            &[(high, Heard::Claiming { decided: false })],
            |_| false
        ),
        Decision::Upstream
    );
    assert!(matches!(
        claims.answer(flat(), high, true),
        LocalAnswer::Claiming { decided: true }
    ));
}

#[test]
fn anyone_defers_to_a_decided_claimer_and_claims_are_single() {
    let (low, high) = ordered();
    let claims = Claims::default();
    assert!(claims.claim(flat()));
    assert!(!claims.claim(flat()), "a second local claim");
    let heard = [
        (high, Heard::Claiming { decided: true }),
        (PeerId::random(), Heard::None),
    ];
    assert_eq!(
        claims.decide(flat(), low, &heard, |_| false),
        Decision::Defer(high)
    );
    claims.release(&flat());
    assert!(matches!(
        claims.answer(flat(), high, false),
        LocalAnswer::None
    ));
}
