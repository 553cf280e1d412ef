//! The queue against a real JetStream server (Debian's `nats-server`, started by the test on a
//! free port): batches come back in order whatever their size, a stored result is never
//! computed again, a task whose worker dies goes to another, and a failure names its worker.

use std::time::Duration;

use bytes::Bytes;
use dexlab_queue::test_utils::NatsServer as Server;
use dexlab_queue::{Queue, QueueError};

/// A worker that answers each `echo` task with its payload reversed, counting what it ran.
fn echo_worker(q: Queue, ran: std::sync::Arc<std::sync::atomic::AtomicU64>) {
    tokio::spawn(async move {
        let mut tasks = q.tasks("echo", Duration::from_secs(1), 64).await.unwrap();
        while let Some(t) = tasks.next().await {
            let t = t.unwrap();
            ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut p = t.payload.to_vec();
            p.reverse();
            q.finish(&t, Ok(&p), "echo-1").await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_come_back_in_order_and_are_never_computed_twice() {
    let s = Server::start();
    let q = Queue::connect(&s.url).await.unwrap();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    echo_worker(q.clone(), ran.clone());
    // More tasks than the client lets acknowledgements wait (5,000): published in a window.
    let items: Vec<(String, Bytes)> = (0..6000)
        .map(|i| (format!("i{i}"), Bytes::from(format!("task {i}"))))
        .collect();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        q.run_batch("echo", "big", items.clone(), Duration::from_secs(30)),
    )
    .await
    .expect("a batch of 6,000 tasks hung")
    .unwrap();
    assert_eq!(out.len(), 6000);
    for (i, (worker, r)) in out.iter().enumerate() {
        assert_eq!(worker, "echo-1");
        let mut want = format!("task {i}").into_bytes();
        want.reverse();
        assert_eq!(r.as_ref(), &want[..], "result {i}");
    }
    assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 6000);
    // The same tasks again (and one twice in a batch): all from the results bucket.
    let mut again = items[..10].to_vec();
    again.push(items[3].clone());
    let out = q
        .run_batch("echo", "big", again, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(out.len(), 11);
    assert_eq!(out[10], out[3]);
    assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 6000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_task_goes_to_another_and_failures_name_their_worker() {
    let s = Server::start();
    let q = Queue::connect(&s.url).await.unwrap();
    // A worker that takes the task and dies without a word (its consumer sees no ack).
    let dead = Queue::connect(&s.url).await.unwrap();
    let mut taken = dead.tasks("echo", Duration::from_secs(1), 1).await.unwrap();
    let batch = tokio::spawn({
        let q = q.clone();
        async move {
            q.run_batch(
                "echo",
                "redo",
                vec![("only".into(), Bytes::from_static(b"abc"))],
                Duration::from_secs(30),
            )
            .await
        }
    });
    let held = taken.next().await.unwrap().unwrap();
    assert_eq!(held.delivered, 1);
    drop(taken);
    drop(dead);
    // Another worker gets it once the ack wait has passed.
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    echo_worker(q.clone(), ran.clone());
    let out = batch.await.unwrap().unwrap();
    assert_eq!(out[0].1.as_ref(), b"cba");
    assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 1);

    // A failure comes back with its worker's name, and is not kept for the next run.
    let failing = Queue::connect(&s.url).await.unwrap();
    tokio::spawn(async move {
        let mut tasks = failing
            .tasks("fail", Duration::from_secs(5), 1)
            .await
            .unwrap();
        while let Some(t) = tasks.next().await {
            let t = t.unwrap();
            failing
                .finish(&t, Err("the dataset is not there"), "w-7")
                .await
                .unwrap();
        }
    });
    let e = q
        .run_batch(
            "fail",
            "f",
            vec![("x".into(), Bytes::new())],
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, QueueError::TaskFailed { worker, message, .. }
            if worker == "w-7" && message.contains("not there")),
        "{e}"
    );
    assert!(q.result("f.x").await.unwrap().is_none());

    // No worker of this kind: the batch gives up after the stall time and says so.
    let e = q
        .run_batch(
            "nobody",
            "n",
            vec![("x".into(), Bytes::new())],
            Duration::from_secs(2),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no result for 1 of 1 tasks in 2 s"), "{e}");
}
