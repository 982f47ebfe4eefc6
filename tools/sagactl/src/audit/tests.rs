use events::{Cents, LineItem, Quantity};

use super::*;

fn sku() -> Sku {
    Sku::parse("sku-a").unwrap()
}

fn customer() -> CustomerId {
    CustomerId::parse("c-1").unwrap()
}

fn id(s: &str) -> OrderId {
    OrderId::parse(s).unwrap()
}

fn lines(quantity: u32) -> Vec<PricedLine> {
    vec![PricedLine {
        sku: sku(),
        quantity: Quantity::new(u64::from(quantity)).unwrap(),
        unit_price_cents: Cents(100),
    }]
}

fn order(order_id: &str, quantity: u32, status: OrderStatus) -> Order {
    let placed = Order::placed(
        id(order_id),
        customer(),
        &[LineItem {
            sku: sku(),
            quantity: Quantity::new(u64::from(quantity)).unwrap(),
        }],
    );
    Order {
        status,
        total_cents: (status == OrderStatus::Confirmed).then_some(Cents(100 * u64::from(quantity))),
        ..placed
    }
}

/// Restocked 10; o-1 confirmed (2), o-2 committed but not confirmed yet
/// (1), o-3 holding 3 and charged, o-4 cancelled (released, refunded);
/// deposited 1000.
fn books() -> Books {
    let mut books = Books::default();
    for o in [
        order("o-1", 2, OrderStatus::Confirmed),
        order("o-2", 1, OrderStatus::Pending),
        order("o-3", 3, OrderStatus::Pending),
        order("o-4", 4, OrderStatus::Cancelled),
    ] {
        books.orders.insert(o.order_id.clone(), o);
    }
    books.skus.insert(
        sku(),
        StockLevel {
            sku: sku(),
            available: 4,
            reserved: 3,
            unit_price_cents: Cents(100),
            restocked: 10,
            committed: 3,
        },
    );
    let held = [
        (
            "o-1",
            InventoryEvent::Committed {
                order_id: id("o-1"),
                lines: lines(2),
            },
        ),
        (
            "o-2",
            InventoryEvent::Committed {
                order_id: id("o-2"),
                lines: lines(1),
            },
        ),
        (
            "o-3",
            InventoryEvent::Reserved {
                order_id: id("o-3"),
                lines: lines(3),
                total_cents: Cents(300),
            },
        ),
        (
            "o-4",
            InventoryEvent::Released {
                order_id: id("o-4"),
                lines: lines(4),
            },
        ),
    ];
    for (order_id, event) in held {
        books.stock_held.insert(id(order_id), event);
    }
    let charged = |o: &str, cents| PaymentEvent::Charged {
        order_id: id(o),
        customer_id: customer(),
        amount_cents: Cents(cents),
    };
    books.payments.insert(id("o-1"), charged("o-1", 200));
    books.payments.insert(id("o-2"), charged("o-2", 100));
    books.payments.insert(id("o-3"), charged("o-3", 300));
    books.payments.insert(
        id("o-4"),
        PaymentEvent::Refunded {
            order_id: id("o-4"),
            customer_id: customer(),
            amount_cents: Cents(400),
        },
    );
    books.accounts.insert(
        customer(),
        Account {
            customer_id: customer(),
            balance_cents: Cents(400),
            deposited_cents: Cents(1000),
            charged_cents: Cents(1000),
            refunded_cents: Cents(400),
        },
    );
    books
}

fn named(books: &Books) -> Vec<String> {
    check(books).iter().map(ToString::to_string).collect()
}

#[test]
fn books_of_running_and_finished_sagas_add_up() {
    assert_eq!(named(&books()), Vec::<String>::new());
}

#[test]
fn an_order_confirmed_meanwhile_counts_as_unfinished_until_read_again() {
    // Committed and paid after the orders were read: still pending there.
    let mut books = books();
    books.orders.remove(&id("o-2"));
    assert_eq!(named(&books), Vec::<String>::new());
}

#[test]
fn a_unit_missing_from_a_sku_is_named() {
    let mut books = books();
    books.skus.get_mut(&sku()).unwrap().available = 3;
    assert_eq!(
        named(&books),
        ["sku sku-a: restocked 10 but available 3 + reserved 3 + committed 3 = 9"]
    );
}

#[test]
fn stock_held_or_committed_for_a_finished_order_is_named() {
    let mut books = books();
    books.orders.get_mut(&id("o-3")).unwrap().status = OrderStatus::Cancelled;
    books.payments.insert(
        id("o-3"),
        PaymentEvent::Refunded {
            order_id: id("o-3"),
            customer_id: customer(),
            amount_cents: Cents(300),
        },
    );
    books.accounts.get_mut(&customer()).unwrap().refunded_cents = Cents(700);
    books.accounts.get_mut(&customer()).unwrap().balance_cents = Cents(700);
    assert_eq!(
        named(&books),
        ["order o-3: Cancelled, yet its stock is still held (reserved)"]
    );
}

#[test]
fn a_cancelled_order_still_charged_is_named_with_the_account() {
    let mut books = books();
    books.orders.get_mut(&id("o-4")).unwrap().status = OrderStatus::Cancelled;
    books.payments.insert(
        id("o-4"),
        PaymentEvent::Charged {
            order_id: id("o-4"),
            customer_id: customer(),
            amount_cents: Cents(400),
        },
    );
    let account = books.accounts.get_mut(&customer()).unwrap();
    account.refunded_cents = Cents(0);
    account.balance_cents = Cents(0);
    assert_eq!(
        named(&books),
        [
            "order o-4: CANCELLED, yet its customer is charged",
            "account c-1: charged 1000 - refunded 0 = 1000, but its confirmed and charged orders cost 600"
        ]
    );
}

#[test]
fn a_confirmed_order_whose_final_state_is_gone_shows_in_the_totals() {
    // What the admin identity can do: delete an order's final state.
    let mut books = books();
    books.orders.remove(&id("o-1"));
    books.stock_held.remove(&id("o-1"));
    books.payments.remove(&id("o-1"));
    assert_eq!(
        named(&books),
        [
            "sku sku-a: committed 3, but its confirmed and committing orders take 1",
            "account c-1: charged 1000 - refunded 400 = 600, but its confirmed and charged orders cost 400"
        ]
    );
}

#[test]
fn an_account_whose_balance_does_not_add_up_is_named() {
    let mut books = books();
    books.accounts.get_mut(&customer()).unwrap().balance_cents = Cents(500);
    assert_eq!(
        named(&books),
        ["account c-1: balance 500 + charged 1000 != deposited 1000 + refunded 400"]
    );
}
