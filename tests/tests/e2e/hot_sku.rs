//! Many orders racing for a few units of one sku never oversell it.

use e2e::Suite;
use events::{CancelReason, Cents, OrderStatus};
use futures::future::join_all;

#[tokio::test]
async fn a_hundred_orders_racing_for_five_units_confirm_exactly_five() {
    let suite = Suite::start().await;
    suite
        .seed(&[("hot", 5, 1000)], &[("rich", 10_000_000)])
        .await;

    let acks = join_all((0..100).map(|i| {
        let client = suite.client.clone();
        async move {
            client
                .send(
                    "orders.cmd.place",
                    Default::default(),
                    jetsaga_client::place_body(&format!("race-{i}"), "rich", &[("hot", 1)]),
                )
                .await
                .unwrap()
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(acks.len(), 100);

    let orders = join_all((0..100).map(|i| {
        let suite = &suite;
        async move { suite.settled(&format!("race-{i}")).await }
    }))
    .await;
    let confirmed = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Confirmed)
        .count();
    let out_of_stock = orders
        .iter()
        .filter(|o| {
            o.status == OrderStatus::Cancelled && o.reason == Some(CancelReason::OutOfStock)
        })
        .count();
    assert_eq!((confirmed, out_of_stock), (5, 95));

    assert_eq!(suite.stock_of("hot").await, (0, 0));
    let account = suite.client.account("rich").await.unwrap().unwrap();
    assert_eq!(
        account.balance_cents,
        Cents(10_000_000 - 5 * 1000),
        "exactly five units charged"
    );
    suite.stop().await;
}
