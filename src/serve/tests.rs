//! The connection table's rules: who is displaced at the cap, when the accept loop waits.

use super::*;

#[test]
fn at_the_cap_a_connection_without_a_request_head_is_displaced_first_whatever_its_age() {
    let t = Table::new(3);
    let (_a, ca) = t.admit(0, false).unwrap();
    let (_b, cb) = t.admit(1, false).unwrap();
    let (_c, cc) = t.admit(2, false).unwrap();
    // a has a request in flight, b served one and is idle, c never sent a complete head
    ca.busy.store(1, Ordering::Release);
    cb.served.store(true, Ordering::Release);
    // the head-less one goes first, even 1 ms old
    let (_d, cd) = t.admit(3, false).expect("c is displaceable at once");
    assert!(cc.displaced.is_cancelled() && !cb.displaced.is_cancelled() && !ca.displaced.is_cancelled());
    // then d (head-less) before the idle b
    let (_e, ce) = t.admit(4, false).expect("d is displaceable");
    assert!(cd.displaced.is_cancelled() && !cb.displaced.is_cancelled());
    // only busy and idle ones left besides e: e, head-less, still goes before the idle one
    let (_f, cf) = t.admit(5, false).expect("e is displaceable");
    assert!(ce.displaced.is_cancelled() && !cb.displaced.is_cancelled());
    // with no head-less one left, the idle one goes
    cf.busy.store(1, Ordering::Release);
    t.admit(6, false).expect("b is displaceable");
    assert!(cb.displaced.is_cancelled() && !ca.displaced.is_cancelled() && !cf.displaced.is_cancelled());
}

/// A table of two: a admitted at 0 ms (its request head waiting at accept, or not), then b, whose
/// socket has been read once; a third, at 2 ms, displaces b and not a. Returns the table, a and the
/// third.
#[track_caller]
fn read_b_goes_before_a(a_head_waiting: bool, room: &str) -> (Table, Arc<Conn>, Arc<Conn>) {
    let t = Table::new(2);
    let (_a, ca) = t.admit(0, a_head_waiting).unwrap();
    let (_b, cb) = t.admit(1, false).unwrap();
    cb.read_once.store(true, Ordering::Release);
    let (_c, cc) = t.admit(2, false).expect(room);
    assert!(cb.displaced.is_cancelled() && !ca.displaced.is_cancelled(), "b, read once, goes before a");
    (t, ca, cc)
}

#[test]
fn a_head_less_socket_already_read_goes_before_one_not_read_yet() {
    // a is older but its socket was never read: its request may be waiting there
    let (t, ca, cc) = read_b_goes_before_a(false, "room");
    // no read one left: the oldest unread one
    t.admit(3, false).expect("room");
    assert!(ca.displaced.is_cancelled() && !cc.displaced.is_cancelled());
}

#[test]
fn a_connection_whose_request_head_was_waiting_at_accept_is_not_displaced() {
    let (t, ca, _) = read_b_goes_before_a(true, "b is head-less");
    let (_d, cd) = t.admit(3, true).expect("the new head-less one");
    assert!(!ca.displaced.is_cancelled());
    // only requests on their way: refused, as when every connection is busy
    assert!(t.admit(4, false).is_none());
    assert!(!ca.displaced.is_cancelled() && !cd.displaced.is_cancelled());
}

#[test]
fn idle_ones_go_longest_idle_first_and_a_busy_one_never() {
    let t = Table::new(2);
    let (_a, ca) = t.admit(0, false).unwrap();
    let (_b, cb) = t.admit(100, false).unwrap();
    for c in [&ca, &cb] {
        c.served.store(true, Ordering::Release);
    }
    ca.idle_since.store(900, Ordering::Release);
    cb.idle_since.store(500, Ordering::Release);
    let (_c, cc) = t.admit(1000, false).expect("an idle connection may go");
    assert!(cb.displaced.is_cancelled() && !ca.displaced.is_cancelled(), "the one idle longest");
    ca.busy.store(1, Ordering::Release);
    cc.busy.store(1, Ordering::Release);
    assert!(t.admit(1100, false).is_none(), "every connection has a request in flight: refused");
    assert!(!ca.displaced.is_cancelled() && !cc.displaced.is_cancelled());
}

#[test]
fn displaced_connections_still_closing_hold_the_accept_loop() {
    let t = Table::new(16);
    let conns: Vec<_> = (0..16).map(|i| t.admit(i, false).unwrap()).collect();
    assert!(t.has_room());
    let (new_id, _) = t.admit(20, false).unwrap();
    assert!(t.has_room(), "one displaced connection still closing, within the slack of 16/8 = 2");
    t.admit(21, false).unwrap();
    assert!(!t.has_room(), "two still closing: wait");
    // the first displaced task ends: its descriptor is free
    t.remove(conns[0].0);
    assert_eq!(t.closing.load(Ordering::Acquire), 1);
    assert!(t.has_room());
    // a connection that ends by itself (not displaced) frees its slot, not a closing one
    t.remove(new_id);
    assert_eq!(t.closing.load(Ordering::Acquire), 1);
}

#[test]
fn the_cap_is_at_most_half_the_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let half = usize::try_from(lim.rlim_cur / 2).unwrap_or(usize::MAX);
    assert_eq!(effective_max_connections(usize::MAX), half.max(1));
    assert_eq!(effective_max_connections(3), 3.min(half).max(1));
    assert_eq!(effective_max_connections(0), 1);
}
