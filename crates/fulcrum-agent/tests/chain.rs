//! Trust-bundle chaining as data: an agent pinned to v1 (key A) meets the registry after
//! rotations (A → B → C). Each row is a chain it could be served, with what it must conclude.

mod common;

use common::published;
use fulcrum_agent::chain::{Endorsement, Link, follow};
use fulcrum_agent::check::Deny;
use fulcrum_sign::{Alg, KeyStatus, LocalKey, PublishedKey, Signer, TrustBundle};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn t(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn now() -> OffsetDateTime {
    t("2026-11-28T12:00:00Z")
}

fn bundle(version: u64, issued: &str, keys: Vec<PublishedKey>) -> TrustBundle {
    let expires = (t(issued) + Duration::days(30)).format(&Rfc3339).unwrap();
    TrustBundle { version, issued_at: issued.into(), expires_at: Some(expires), keys, sigstore: None }
}

/// A link signed by `signer`, endorsed by each of `endorsers`.
fn link(b: &TrustBundle, signer: &LocalKey, endorsers: &[&LocalKey]) -> Link {
    let body = serde_json::to_string(b).unwrap();
    let sig = |k: &LocalKey| fulcrum_sign::b64(&k.sign(body.as_bytes()).unwrap());
    Link {
        version: b.version,
        kid: signer.kid().into(),
        signature: sig(signer),
        endorsements: endorsers.iter().map(|k| Endorsement { kid: k.kid().into(), sig: sig(k) }).collect(),
        body,
    }
}

/// (what, chain, adopted version or the deny code)
type Row = (&'static str, Vec<Link>, Result<Option<u64>, &'static str>);

#[test]
fn chained_bundles_are_adopted_only_through_trusted_links() {
    let a = LocalKey::ephemeral(Alg::Ed25519).unwrap();
    let b = LocalKey::ephemeral(Alg::Ed25519).unwrap();
    let c = LocalKey::ephemeral(Alg::EcdsaP256Sha256).unwrap();
    let evil = LocalKey::ephemeral(Alg::Ed25519).unwrap();
    let (t1, t2, t3) = ("2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z", "2026-11-20T00:00:00Z");
    let active = KeyStatus::Active;
    let pinned = bundle(1, t1, vec![published(&a, t1, None, active)]);
    // v2: B rotated in, A retired at t2, endorsed by A. v3: C rotated in, endorsed by B.
    let v2 = bundle(2, t2, vec![published(&a, t1, Some(t2), KeyStatus::Retired), published(&b, t2, None, active)]);
    let v3 = bundle(
        3,
        t3,
        vec![
            published(&a, t1, Some(t2), KeyStatus::Retired),
            published(&b, t2, Some(t3), KeyStatus::Retired),
            published(&c, t3, None, active),
        ],
    );
    // v3 that also marks A compromised (A vouched for v2).
    let v3_a_burnt = bundle(
        3,
        t3,
        vec![
            published(&a, t1, Some(t2), KeyStatus::Compromised),
            published(&b, t2, Some(t3), KeyStatus::Retired),
            published(&c, t3, None, active),
        ],
    );
    let v2_evil =
        bundle(2, t2, vec![published(&a, t1, Some(t2), KeyStatus::Retired), published(&evil, t2, None, active)]);
    let mut v2_expired = v2.clone();
    v2_expired.expires_at = Some("2026-11-11T00:00:00Z".into());
    let mut v2_backdated = v2.clone();
    v2_backdated.issued_at = "2026-10-01T00:00:00Z".into();

    let rows: Vec<Row> = vec![
        ("nothing new", vec![], Ok(None)),
        ("one rotation, endorsed by the old key", vec![link(&v2, &b, &[&a])], Ok(Some(2))),
        ("two rotations, each endorsed", vec![link(&v2, &b, &[&a]), link(&v3, &c, &[&b])], Ok(Some(3))),
        ("a rotation nobody trusted vouched for", vec![link(&v2, &b, &[])], Err("bundle_chain_broken")),
        ("an attacker's bundle endorsed by itself", vec![link(&v2_evil, &evil, &[&evil])], Err("bundle_chain_broken")),
        ("a link skipped", vec![link(&v3, &c, &[&b])], Err("bundle_chain_broken")),
        (
            "a link whose own signature is not its key's",
            vec![Link { signature: link(&v2, &a, &[]).signature, ..link(&v2, &b, &[&a]) }],
            Err("bundle_chain_broken"),
        ),
        (
            "a body that says another version",
            vec![Link { version: 2, ..link(&v3, &c, &[&a]) }],
            Err("bundle_chain_broken"),
        ),
        ("issued before the bundle it follows", vec![link(&v2_backdated, &b, &[&a])], Err("bundle_chain_broken")),
        (
            "a voucher the newest bundle marks compromised",
            vec![link(&v2, &b, &[&a]), link(&v3_a_burnt, &c, &[&b])],
            Err("bundle_chain_broken"),
        ),
        ("the newest bundle expired", vec![link(&v2_expired, &b, &[&a])], Err("bundle_expired")),
    ];
    for (what, chain, want) in rows {
        let got = follow(&pinned, &chain, now()).map(|b| b.map(|b| b.version)).map_err(|e: Deny| e.code());
        assert_eq!(got, want, "{what}");
    }
    // The adopted bundle is exactly the newest link's body.
    let got = follow(&pinned, &[link(&v2, &b, &[&a]), link(&v3, &c, &[&b])], now()).unwrap().unwrap();
    assert_eq!(got, v3);
}
