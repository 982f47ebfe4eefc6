//! The planner's rules, one by one, on changes named for what they are.

use bytes::Bytes;

use super::*;

/// A change named `name`, whose outcome goes nowhere.
fn change(name: &'static str, appends: Vec<Append>) -> Pending<&'static str> {
    Pending::new(appends, name)
}

fn write(subject: &str) -> Append {
    Append::raw(subject, Bytes::from_static(b"x"))
}

/// A state and the event announcing it, each expecting its subject empty,
/// as a reservation is written.
fn reservation(name: &'static str, n: usize) -> Pending<&'static str> {
    change(
        name,
        vec![
            write(&format!("t.state.{n}")).expect_last(0),
            write(&format!("t.event.{n}")).expect_last(0),
        ],
    )
}

/// Plans one group of `changes`, in queue order; the second element is
/// what `incoming` did not hand out.
fn plan(
    planner: &mut Planner<&'static str>,
    changes: Vec<Pending<&'static str>>,
) -> (Group<&'static str>, Vec<&'static str>) {
    let mut queue = changes.into_iter();
    let first = planner
        .take_held_back()
        .or_else(|| queue.next())
        .expect("a change to plan");
    let group = planner.plan(first, || queue.next());
    (group, queue.map(|c| c.reply).collect())
}

fn names(changes: &[Pending<&'static str>]) -> Vec<&'static str> {
    changes.iter().map(|c| c.reply).collect()
}

fn refused(group: &Group<&'static str>) -> Vec<&'static str> {
    group.refused.iter().map(|(c, _)| c.reply).collect()
}

fn held_back(planner: &mut Planner<&'static str>) -> Vec<&'static str> {
    std::iter::from_fn(|| planner.take_held_back())
        .map(|c| c.reply)
        .collect()
}

fn expected_last(append: &Append) -> Option<&str> {
    append
        .headers
        .get(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE)
        .map(|v| v.as_str())
}

#[test]
fn changes_of_different_aggregates_share_one_group_in_queue_order() {
    let mut planner = Planner::new(256);
    let changes = vec![
        reservation("a", 1),
        reservation("b", 2),
        reservation("c", 3),
    ];
    let (group, left) = plan(&mut planner, changes);
    assert_eq!(names(&group.ready), ["a", "b", "c"]);
    assert!(!group.chained);
    assert!(group.refused.is_empty());
    assert!(left.is_empty());
    assert!(held_back(&mut planner).is_empty());
}

#[test]
fn a_group_takes_changes_until_it_holds_the_cap_and_leaves_the_rest_queued() {
    let mut planner = Planner::new(4);
    let changes = vec![
        reservation("a", 1),
        reservation("b", 2),
        reservation("c", 3),
        reservation("d", 4),
    ];
    let (group, left) = plan(&mut planner, changes);
    assert_eq!(names(&group.ready), ["a", "b"]);
    assert_eq!(left, ["c", "d"], "not taken from the queue at all");
}

#[test]
fn the_change_that_reaches_the_cap_is_taken_whole() {
    let mut planner = Planner::new(3);
    let (group, left) = plan(&mut planner, vec![reservation("a", 1), reservation("b", 2)]);
    assert_eq!(
        names(&group.ready),
        ["a", "b"],
        "4 messages: a change is never split"
    );
    assert!(left.is_empty());
}

#[test]
fn a_change_checking_a_subject_written_earlier_in_the_group_waits_with_all_behind_it() {
    let mut planner = Planner::new(256);
    let changes = vec![
        reservation("first", 1),
        change("again", vec![write("t.state.1").expect_last(7)]),
        reservation("unrelated", 2),
    ];
    let (group, _) = plan(&mut planner, changes);
    assert_eq!(names(&group.ready), ["first"]);
    assert_eq!(held_back(&mut planner), ["again", "unrelated"]);
}

#[test]
fn held_back_changes_start_the_next_group_ahead_of_newer_ones() {
    let mut planner = Planner::new(256);
    let changes = vec![
        reservation("first", 1),
        change("again", vec![write("t.state.1").expect_last(7)]),
        reservation("behind", 2),
    ];
    plan(&mut planner, changes);
    let (next, _) = plan(&mut planner, vec![reservation("newer", 3)]);
    assert_eq!(names(&next.ready), ["again", "behind", "newer"]);
}

#[test]
fn two_changes_checking_one_wildcard_never_share_a_group() {
    let mut planner = Planner::new(256);
    let answer = |name, n: usize| {
        change(
            name,
            vec![
                write(&format!("t.state.{n}")).expect_last(0),
                write("t.event.o-1.reserved").expect_last_on("t.event.o-1.*", 0),
            ],
        )
    };
    let (group, _) = plan(&mut planner, vec![answer("one", 1), answer("two", 2)]);
    assert_eq!(names(&group.ready), ["one"]);
    assert_eq!(held_back(&mut planner), ["two"]);
}

#[test]
fn checks_on_different_wildcards_share_a_group() {
    let mut planner = Planner::new(256);
    let changes = vec![
        change(
            "o-1",
            vec![write("t.event.o-1.reserved").expect_last_on("t.event.o-1.*", 0)],
        ),
        change(
            "o-2",
            vec![write("t.event.o-2.reserved").expect_last_on("t.event.o-2.*", 0)],
        ),
    ];
    let (group, _) = plan(&mut planner, changes);
    assert_eq!(names(&group.ready), ["o-1", "o-2"]);
}

#[test]
fn unchecked_writes_to_one_subject_share_a_group() {
    let mut planner = Planner::new(256);
    let changes = vec![
        change("a", vec![write("t.log")]),
        change("b", vec![write("t.log")]),
    ];
    let (group, _) = plan(&mut planner, changes);
    assert_eq!(names(&group.ready), ["a", "b"]);
}

#[test]
fn a_check_waits_for_an_unchecked_write_earlier_in_the_group() {
    let mut planner = Planner::new(256);
    let changes = vec![
        change("unchecked", vec![write("t.state.1")]),
        change("checked", vec![write("t.state.1").expect_last(3)]),
    ];
    let (group, _) = plan(&mut planner, changes);
    assert_eq!(names(&group.ready), ["unchecked"]);
    assert_eq!(held_back(&mut planner), ["checked"]);
}

#[test]
fn a_change_built_on_one_earlier_in_the_group_shares_it_unchecked() {
    let mut planner = Planner::new(256);
    let first = change("first", vec![write("t.state.hot").expect_last(0)]);
    let second = change(
        "second",
        vec![write("t.state.hot").expect_after(&first.messages[0])],
    );
    let (group, _) = plan(&mut planner, vec![first, second]);
    assert_eq!(names(&group.ready), ["first", "second"]);
    assert!(group.chained, "the batch's order guards the second");
    assert_eq!(expected_last(&group.ready[1].appends[0]), None);
}

#[test]
fn a_change_built_on_a_stored_write_checks_the_sequence_it_got() {
    let mut planner = Planner::new(256);
    let stored = Queued::default();
    stored.settle(Some(42));
    let built = change("built", vec![write("t.state.hot").expect_after(&stored)]);
    let (group, _) = plan(&mut planner, vec![built]);
    assert_eq!(names(&group.ready), ["built"]);
    assert!(!group.chained);
    let append = &group.ready[0].appends[0];
    assert_eq!(expected_last(append), Some("42"));
    assert!(append.after.is_none());
}

#[test]
fn a_change_built_on_a_stored_write_waits_for_a_check_on_its_subject() {
    let mut planner = Planner::new(256);
    let stored = Queued::default();
    stored.settle(Some(42));
    let changes = vec![
        change("other", vec![write("t.state.hot").expect_last(42)]),
        change("built", vec![write("t.state.hot").expect_after(&stored)]),
    ];
    let (group, _) = plan(&mut planner, changes);
    assert_eq!(names(&group.ready), ["other"]);
    assert_eq!(held_back(&mut planner), ["built"]);
}

#[test]
fn a_change_built_on_a_write_not_stored_is_refused_and_the_rest_go_ahead() {
    let mut planner = Planner::new(256);
    let lost = Queued::default();
    lost.settle(None);
    let changes = vec![
        change("built", vec![write("t.state.hot").expect_after(&lost)]),
        reservation("unrelated", 1),
    ];
    let (group, _) = plan(&mut planner, changes);
    assert_eq!(refused(&group), ["built"]);
    assert!(matches!(group.refused[0].1, StoreError::Conflict(_)));
    assert_eq!(names(&group.ready), ["unrelated"]);
}

#[test]
fn a_refused_change_refuses_the_chain_built_on_it() {
    let mut planner = Planner::new(256);
    let lost = Queued::default();
    lost.settle(None);
    let stale = change("stale", vec![write("t.state.hot").expect_after(&lost)]);
    let second = change(
        "second",
        vec![write("t.state.hot").expect_after(&stale.messages[0])],
    );
    let third = change(
        "third",
        vec![write("t.state.hot").expect_after(&second.messages[0])],
    );
    let (group, _) = plan(
        &mut planner,
        vec![stale, second, third, reservation("unrelated", 1)],
    );
    assert_eq!(refused(&group), ["stale", "second", "third"]);
    assert_eq!(names(&group.ready), ["unrelated"]);
    assert!(!group.chained);
}

#[test]
fn a_group_may_be_all_refused() {
    let mut planner = Planner::new(256);
    let lost = Queued::default();
    lost.settle(None);
    let built = change("built", vec![write("t.state.hot").expect_after(&lost)]);
    let (group, _) = plan(&mut planner, vec![built]);
    assert_eq!(refused(&group), ["built"]);
    assert!(group.ready.is_empty());
}
