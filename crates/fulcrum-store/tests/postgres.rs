//! PostgreSQL connection settings: the password comes from a file (re-read when it changes),
//! never from the URL; a database that goes away fails requests with a transient error and
//! serves again when it returns; replicas starting together migrate once.

use fulcrum_secret::Secret;
use fulcrum_store::{Database, Store, StoreError, StoreOptions};
use fulcrum_testkit::postgres::{PASSWORD, PASSWORD_ROLE};

fn with_role(pg: &fulcrum_testkit::Postgres, db: &str) -> String {
    format!("postgres://{PASSWORD_ROLE}@127.0.0.1:{}/{db}", pg.port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_comes_from_a_file_never_from_the_url() {
    let Some(pg) = fulcrum_testkit::Postgres::start() else { return };
    pg.database("reg");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");

    // In the URL: refused before any connection, and the error does not echo it.
    let e = Store::connect(
        &Database::Postgres {
            url: format!("postgres://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:{}/reg", pg.port),
            password: None,
        },
        StoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::Config(_)), "{e:?}");
    assert!(!e.to_string().contains(PASSWORD), "{e}");

    // A wrong password: a clear failure that does not echo it.
    std::fs::write(&file, "not-the-password\n").unwrap();
    let db = Database::Postgres { url: with_role(&pg, "reg"), password: Some(Secret::from_file(&file).unwrap()) };
    let e = Store::connect(&db, StoreOptions::default()).await.unwrap_err();
    assert!(!e.to_string().contains("not-the-password"), "{e}");
    assert!(e.to_string().contains("password"), "{e}");

    // The right one, from the file.
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let db = Database::Postgres { url: with_role(&pg, "reg"), password: Some(Secret::from_file(&file).unwrap()) };
    let store = Store::connect(&db, StoreOptions::default()).await.unwrap();
    assert_eq!(store.last_event_seq().await.unwrap(), 0);
    assert!(!db.display().contains(PASSWORD) && !format!("{db:?}").contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_fails_fast_and_serves_again_when_back() {
    let Some(pg) = fulcrum_testkit::Postgres::start() else { return };
    let db = Database::Postgres { url: pg.database("reg"), password: None };
    let store = Store::connect(&db, StoreOptions::default()).await.unwrap();
    store.record_decision(&decision("d0")).await.unwrap();

    pg.stop();
    let started = std::time::Instant::now();
    let e = store.record_decision(&decision("d1")).await.unwrap_err();
    assert!(e.is_transient(), "a lost database is worth retrying: {e:?}");
    let e = store.last_event_seq().await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "no hang: {:?}", started.elapsed());

    pg.restart();
    let mut back = false;
    for _ in 0..50 {
        match store.record_decision(&decision("d2")).await {
            Ok(_) => {
                back = true;
                break;
            }
            Err(e) => assert!(e.is_transient(), "only transient failures while it comes back: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(back, "the store serves again once the database is back");
    let q = fulcrum_store::DecisionQuery { tenant: "t".into(), limit: 10, ..Default::default() };
    let ids: Vec<String> = store.decisions(&q).await.unwrap().into_iter().map(|(_, r)| r).collect();
    assert_eq!(ids, ["d0", "d2"], "the failed write left nothing behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(pg) = fulcrum_testkit::Postgres::start() else { return };
    let db = Database::Postgres { url: pg.database("reg"), password: None };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { Store::connect(&db, StoreOptions::default()).await.map(|_| ()) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }
    assert!(Store::migrate(&db).await.unwrap().is_empty());
}

fn decision(id: &str) -> fulcrum_store::DecisionRow {
    fulcrum_store::DecisionRow {
        decision_id: id.into(),
        tenant: "t".into(),
        model: None,
        version: None,
        path: "fulcrum/gate".into(),
        allow: true,
        revision: "r".into(),
        chg_id: None,
        inc_id: None,
        record: id.into(),
    }
}

/// A rotated password: the operator changes it in the database and in the file; connections the
/// store opens afterwards use the new one, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_file_is_used_for_new_connections() {
    let Some(pg) = fulcrum_testkit::Postgres::start() else { return };
    pg.database("reg");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let db = Database::Postgres { url: with_role(&pg, "reg"), password: Some(Secret::from_file(&file).unwrap()) };
    let store = Store::connect(&db, StoreOptions::default()).await.unwrap();
    store.record_decision(&decision("before")).await.unwrap();

    pg.psql(&format!("ALTER ROLE {PASSWORD_ROLE} PASSWORD 'rotated-secret'"));
    std::fs::write(&file, "rotated-secret\n").unwrap();
    // The store looks at the file every 5 s; then every connection it holds is cut, so the
    // next request must open new ones, which only the new password opens.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    pg.psql(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{PASSWORD_ROLE}'"));
    let mut ok = false;
    for _ in 0..25 {
        if store.record_decision(&decision("after")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(ok, "new connections use the rotated password");
}
