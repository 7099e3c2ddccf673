//! Slot arithmetic: working hours minus what is taken, cut into bookable starts.
//!
//! Everything here is pure (minutes from midnight in, intervals out), so the rules are tested
//! without a database; [`crate::store`] loads the inputs for one barber and day.

/// A half-open interval `[start, end)` of minutes from midnight.
pub type Interval = (u32, u32);

/// `free` minus every interval of `busy`. `busy` need not be sorted or disjoint.
pub fn subtract(free: &[Interval], busy: &[Interval]) -> Vec<Interval> {
    let mut busy: Vec<Interval> = busy.iter().copied().filter(|(a, b)| a < b).collect();
    busy.sort_unstable();
    let mut out = Vec::new();
    for &(start, end) in free {
        let mut cursor = start;
        for &(b_start, b_end) in &busy {
            if b_end <= cursor || b_start >= end {
                continue;
            }
            if b_start > cursor {
                out.push((cursor, b_start));
            }
            cursor = cursor.max(b_end);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            out.push((cursor, end));
        }
    }
    out
}

/// Bookable slots of `duration` minutes inside `working` that overlap nothing in `busy`.
///
/// Starts are multiples of `step` minutes from midnight and no earlier than `not_before`
/// (the minimum notice for today; `0` for other days).
pub fn compute(
    working: &[Interval],
    busy: &[Interval],
    duration: u32,
    step: u32,
    not_before: u32,
) -> Vec<Interval> {
    let step = step.max(1);
    let duration = duration.max(1);
    let mut slots = Vec::new();
    for (start, end) in subtract(working, busy) {
        let first = start.max(not_before);
        let mut s = first.div_ceil(step) * step;
        while s + duration <= end {
            slots.push((s, s + duration));
            s += step;
        }
    }
    slots
}

/// Whether `[start, start + duration)` lies inside one working interval.
pub fn within(working: &[Interval], start: u32, duration: u32) -> bool {
    working
        .iter()
        .any(|&(a, b)| a <= start && start + duration <= b)
}

/// The first interval of `busy` overlapping `[start, end)`, if any.
pub fn first_overlap(busy: &[Interval], start: u32, end: u32) -> Option<Interval> {
    busy.iter().copied().find(|&(a, b)| a < end && start < b)
}

/// Total minutes covered by disjoint intervals.
pub fn minutes(intervals: &[Interval]) -> u32 {
    intervals.iter().map(|(a, b)| b - a).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: &[Interval] = &[(540, 720), (780, 1080)]; // 09:00-12:00, 13:00-18:00

    #[test]
    fn free_day_is_cut_into_steps_that_fit() {
        let slots = compute(DAY, &[], 45, 30, 0);
        // Morning: 09:00 .. 11:00 start (11:00+45 = 11:45 ≤ 12:00; 11:30+45 > 12:00).
        assert_eq!(slots.first(), Some(&(540, 585)));
        assert!(slots.contains(&(660, 705)));
        assert!(!slots.contains(&(690, 735)));
        // Lunch is never offered; afternoon ends at 17:00 (17:00+45 = 17:45).
        assert!(slots.iter().all(|&(s, e)| !(s < 780 && e > 720)));
        assert_eq!(slots.last(), Some(&(1020, 1065)));
        assert_eq!(slots.len(), 5 + 9);
    }

    #[test]
    fn appointments_and_time_off_are_removed() {
        let busy = [(600, 630), (840, 960)]; // 10:00-10:30 booked, 14:00-16:00 off
        let slots = compute(DAY, &busy, 30, 30, 0);
        let starts: Vec<u32> = slots.iter().map(|s| s.0).collect();
        assert_eq!(
            starts,
            vec![540, 570, 630, 660, 690, 780, 810, 960, 990, 1020, 1050]
        );
    }

    #[test]
    fn starts_stay_on_the_grid_after_odd_appointments() {
        // A 09:00-09:40 appointment leaves 09:40; with a 15-minute grid the next start is 09:45.
        let slots = compute(&[(540, 660)], &[(540, 580)], 30, 15, 0);
        assert_eq!(slots.first(), Some(&(585, 615)));
        assert_eq!(slots.last(), Some(&(630, 660)));
    }

    #[test]
    fn minimum_notice_hides_earlier_starts() {
        let slots = compute(DAY, &[], 30, 30, 1000);
        assert_eq!(slots, vec![(1020, 1050), (1050, 1080)]);
    }

    #[test]
    fn overlapping_busy_intervals_merge() {
        let free = subtract(&[(0, 100)], &[(50, 70), (10, 20), (15, 60), (90, 200)]);
        assert_eq!(free, vec![(0, 10), (70, 90)]);
        assert_eq!(minutes(&free), 30);
    }

    #[test]
    fn within_and_overlap() {
        assert!(within(DAY, 540, 180));
        assert!(!within(DAY, 700, 30));
        assert_eq!(first_overlap(&[(600, 630)], 615, 645), Some((600, 630)));
        assert_eq!(first_overlap(&[(600, 630)], 630, 660), None);
    }
}
