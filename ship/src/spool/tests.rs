//! The spool's unit tests: appends, replay, bounds, corruption and a full disk.

use super::*;

fn cfg(dir: &Path, max: u64, seg: u64) -> SpoolConfig {
    SpoolConfig { dir: dir.to_owned(), max_bytes: max, segment_bytes: seg, fsync: Fsync::Never }
}

#[test]
fn replays_oldest_first_across_restarts() {
    let d = tempfile::tempdir().expect("tmp");
    {
        let mut s = Spool::open(cfg(d.path(), 1 << 20, 64)).expect("open");
        for i in 0..10u8 {
            s.append(&[i; 20]).expect("append");
        }
        assert_eq!(s.pending_records(), 10);
        let first = s.peek(45).expect("peek");
        assert_eq!(first, vec![vec![0u8; 20], vec![1u8; 20]]);
        s.ack(3).expect("ack");
    }
    let mut s = Spool::open(cfg(d.path(), 1 << 20, 64)).expect("reopen");
    assert_eq!(s.pending_records(), 7);
    let all = s.peek(1 << 20).expect("peek");
    assert_eq!(all.len(), 7);
    assert_eq!(all[0], vec![3u8; 20]);
    s.ack(7).expect("ack");
    assert_eq!(s.pending_records(), 0);
    assert!(s.peek(100).expect("peek").is_empty());
    s.append(b"new").expect("append");
    assert_eq!(s.peek(100).expect("peek"), vec![b"new".to_vec()]);
}

#[test]
fn full_spool_drops_the_oldest_and_counts() {
    let d = tempfile::tempdir().expect("tmp");
    let mut s = Spool::open(cfg(d.path(), 200, 60)).expect("open");
    let mut dropped = 0;
    for i in 0..20u8 {
        dropped += s.append(&[i; 20]).expect("append");
    }
    assert!(dropped > 0);
    assert_eq!(s.dropped_records(), dropped);
    assert!(s.total_bytes() <= 200);
    let left = s.peek(1 << 20).expect("peek");
    assert_eq!(left.last(), Some(&vec![19u8; 20]), "the newest is kept");
    assert_eq!(left.len() as u64 + dropped, 20, "every batch is either kept or counted");
}

#[test]
fn a_torn_tail_is_cut() {
    let d = tempfile::tempdir().expect("tmp");
    {
        let mut s = Spool::open(cfg(d.path(), 1 << 20, 1 << 20)).expect("open");
        s.append(b"one").expect("append");
        s.append(b"two").expect("append");
    }
    let seg = d.path().join(format!("{:016}.seg", 1));
    let mut f = OpenOptions::new().append(true).open(&seg).expect("seg");
    f.write_all(&[9, 0, 0, 0, 1, 2]).expect("torn");
    drop(f);
    let mut s = Spool::open(cfg(d.path(), 1 << 20, 1 << 20)).expect("reopen");
    assert_eq!(s.peek(1 << 20).expect("peek"), vec![b"one".to_vec(), b"two".to_vec()]);
}

fn seg_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir).expect("dir").filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.ends_with(".seg")).collect();
    v.sort();
    v
}

#[test]
fn a_corrupt_record_is_skipped_and_counted_and_what_follows_is_kept() {
    let d = tempfile::tempdir().expect("tmp");
    {
        let mut s = Spool::open(cfg(d.path(), 1 << 20, 1 << 20)).expect("open");
        for p in [&b"one"[..], b"two", b"three"] {
            s.append(p).expect("append");
        }
    }
    let seg = d.path().join(format!("{:016}.seg", 1));
    let mut data = fs::read(&seg).expect("read");
    let len = data.len();
    data[HEADER as usize + 3 + HEADER as usize] ^= 0x20; // "two" becomes "Two": its CRC fails
    fs::write(&seg, &data).expect("write");
    let mut s = Spool::open(cfg(d.path(), 1 << 20, 1 << 20)).expect("reopen");
    assert_eq!(fs::metadata(&seg).expect("meta").len() as usize, len, "nothing after the corrupt record is cut");
    assert_eq!(s.corrupt_records(), 1);
    assert_eq!(s.pending_records(), 2);
    assert_eq!(s.peek(1 << 20).expect("peek"), vec![b"one".to_vec(), b"three".to_vec()]);
    s.ack(1).expect("ack");
    assert_eq!(s.peek(1 << 20).expect("peek"), vec![b"three".to_vec()]);
    s.ack(1).expect("ack");
    assert_eq!(s.pending_records(), 0);
    // Sent and no longer appended to (opened after a restart): deleted.
    assert!(seg_files(d.path()).is_empty(), "{:?}", seg_files(d.path()));
    drop(s);
    let s = Spool::open(cfg(d.path(), 1 << 20, 1 << 20)).expect("reopen");
    assert_eq!(s.corrupt_records(), 0, "a skipped record is counted once");
}

#[test]
fn a_zeroed_tail_is_not_read_as_records() {
    let d = tempfile::tempdir().expect("tmp");
    {
        let mut s = Spool::open(cfg(d.path(), 1 << 20, 1 << 20)).expect("open");
        s.append(b"one").expect("append");
    }
    let seg = d.path().join(format!("{:016}.seg", 1));
    let f = OpenOptions::new().write(true).open(&seg).expect("seg");
    f.set_len(HEADER + 3 + 64).expect("extend with zeros");
    let s = Spool::open(cfg(d.path(), 1 << 20, 1 << 20)).expect("reopen");
    assert_eq!(s.pending_records(), 1);
    assert_eq!(fs::metadata(&seg).expect("meta").len(), HEADER + 3);
}

#[test]
fn fully_sent_segments_are_deleted_the_last_one_once_rolled() {
    let d = tempfile::tempdir().expect("tmp");
    let seg = |id: u64| format!("{id:016}.seg");
    // One 28-byte record per 40-byte segment.
    let mut s = Spool::open(cfg(d.path(), 1 << 20, 40)).expect("open");
    for i in 0..3u8 {
        s.append(&[b'a' + i; 20]).expect("append");
    }
    assert_eq!(s.segment_count(), 3);
    s.ack(3).expect("ack");
    // The last segment is still appended to: it stays; the others are gone.
    assert_eq!(seg_files(d.path()), vec![seg(3)]);
    s.append(&[b'x'; 20]).expect("append");
    // Rolled to segment 4; segment 3 was fully sent, so it went on the roll.
    assert_eq!(seg_files(d.path()), vec![seg(4)]);
    assert_eq!(s.peek(1 << 20).expect("peek"), vec![vec![b'x'; 20]]);
    s.ack(1).expect("ack");
    drop(s);
    let mut s = Spool::open(cfg(d.path(), 1 << 20, 40)).expect("reopen");
    assert!(seg_files(d.path()).is_empty(), "a fully sent last segment is deleted on restart");
    s.append(b"after").expect("append");
    assert_eq!(seg_files(d.path()), vec![seg(5)], "ids keep growing");
    drop(s);
    let mut s = Spool::open(cfg(d.path(), 1 << 20, 40)).expect("reopen");
    assert_eq!(s.peek(1 << 20).expect("peek"), vec![b"after".to_vec()], "new data after a fully sent spool is not taken as sent");
}

/// The disk fills while a request is in flight: the drop must not shift what the
/// acknowledgement covers, and dropped batches are lost only if their send fails.
#[test]
fn a_drop_during_a_send_shifts_nothing() {
    let d = tempfile::tempdir().expect("tmp");
    // 28-byte records, two per 60-byte segment, 4 segments at most.
    let mut s = Spool::open(cfg(d.path(), 240, 60)).expect("open");
    for i in 0..6u8 {
        s.append(&[i; 20]).expect("append");
    }
    let sent = s.peek(60).expect("peek");
    assert_eq!(sent, vec![vec![0u8; 20], vec![1u8; 20], vec![2u8; 20]]);
    // While they are sent, the bound drops segment 1 (batches 0 and 1, in flight).
    for i in 6..10u8 {
        s.append(&[i; 20]).expect("append");
    }
    assert_eq!(s.dropped_records(), 0, "in flight: not lost yet");
    s.ack(3).expect("ack");
    assert_eq!(s.dropped_records(), 0, "delivered after all");
    assert_eq!(s.peek(1 << 20).expect("peek"), (3..10u8).map(|i| vec![i; 20]).collect::<Vec<_>>(), "batch 3 is next, none skipped");
    // The same, but the send fails: the dropped in-flight batches are lost then.
    for i in 10..12u8 {
        s.append(&[i; 20]).expect("append");
    }
    // Segment 2 (batches 2, 3) went: 3 was in flight (lost when the send fails); 2 was sent.
    assert_eq!(s.dropped_records(), 0);
    let again = s.peek(1 << 20).expect("peek");
    assert_eq!(s.dropped_records(), 1, "batch 3's send failed and it is gone");
    assert_eq!(again.first(), Some(&vec![4u8; 20]));
    s.ack(again.len() as u64).expect("ack");
    assert_eq!(s.pending_records(), 0);
}
