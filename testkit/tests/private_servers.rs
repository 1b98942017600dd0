//! The private servers keep their data across a restart, and leave nothing behind: after a drop
//! (also one during a panic) the port is closed, the processes are gone and the directory is
//! deleted.

use std::path::PathBuf;
use std::time::Duration;

use authstack_testkit::private::{PrivatePostgres, PrivateRabbitMq, StopMode};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn accepts(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// The first bytes a broker answers to the AMQP 0-9-1 protocol header: a `connection.start`
/// method frame (type 1, channel 0, class 10, method 10).
async fn amqp_greeting(port: u16) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    stream.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    let mut frame = vec![0u8; 11];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut frame))
        .await
        .expect("the broker answers")
        .expect("a frame");
    frame
}

/// Processes whose environment contains `needle` (the node name is passed in the environment).
fn processes_with_env(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("environ")).ok())
        .filter(|environ| String::from_utf8_lossy(environ).contains(needle))
        .count()
}

#[tokio::test]
async fn postgres_keeps_its_data_across_restarts_and_is_gone_after_drop() {
    let mut pg = PrivatePostgres::launch().await.expect("launches");
    assert_ne!(pg.port(), 5432, "never the shared server");
    pg.create_database("kept").await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&pg.url("kept")).await.unwrap();
    for statement in ["CREATE TABLE t (v int)", "INSERT INTO t VALUES (7)"] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    drop(conn);

    pg.stop(StopMode::Fast).await.unwrap();
    assert!(sqlx::PgConnection::connect(&pg.url("kept")).await.is_err());
    pg.start().await.unwrap();
    pg.stop(StopMode::Immediate).await.unwrap();
    pg.start().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&pg.url("kept")).await.unwrap();
    let v: i32 = sqlx::query_scalar("SELECT v FROM t")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, 7);
    drop(conn);

    let (port, dir) = (pg.port(), pg.dir().to_path_buf());
    drop(pg);
    assert!(!accepts(port).await, "stopped on drop");
    assert!(!dir.exists(), "{dir:?} deleted on drop");
}

#[tokio::test]
async fn rabbitmq_restarts_on_its_port_and_is_gone_after_a_panic() {
    let mut broker = PrivateRabbitMq::launch().await.expect("launches");
    let port = broker.addr().port();
    assert_ne!(port, 5672, "never the shared broker");
    assert_eq!(&amqp_greeting(port).await[..1], [1u8], "a method frame");
    assert_eq!(
        &amqp_greeting(port).await[7..11],
        [0, 10, 0, 10],
        "connection.start"
    );

    broker.stop().await.unwrap();
    assert!(!accepts(port).await, "stopped");
    broker.start().await.unwrap();
    assert_eq!(&amqp_greeting(port).await[7..11], [0, 10, 0, 10]);

    let node = format!("RABBITMQ_NODENAME={}", broker.node());
    let dir: PathBuf = broker.dir().to_path_buf();
    assert!(processes_with_env(&node) > 0, "the node runs");
    // A test that panics while holding the broker: unwinding drops it.
    let panicked = std::thread::spawn(move || {
        let _held = broker;
        panic!("test failure while the broker runs");
    })
    .join();
    assert!(panicked.is_err());
    assert!(!accepts(port).await, "killed on drop");
    assert_eq!(processes_with_env(&node), 0, "no process of the node left");
    assert!(!dir.exists(), "{dir:?} deleted on drop");
}
