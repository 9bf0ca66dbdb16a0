package protocol

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zones work whatever the machine has installed
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

// utc is a shorthand for an instant given in UTC.
func utc(y int, m time.Month, d, hh, mm int) time.Time {
	return time.Date(y, m, d, hh, mm, 0, 0, time.UTC)
}

func TestScheduleValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Schedule
		want string // substring naming the bad field; "" means valid
	}{
		// Valid.
		{"on demand", Schedule{Kind: ScheduleOnDemand}, ""},
		{"empty kind is on demand", Schedule{}, ""},
		{"daily utc default", Schedule{Kind: ScheduleDaily, Time: "02:30"}, ""},
		{"daily midnight", Schedule{Kind: ScheduleDaily, Time: "00:00", Timezone: "UTC"}, ""},
		{"daily last minute", Schedule{Kind: ScheduleDaily, Time: "23:59", Timezone: "Asia/Kolkata"}, ""},
		{"weekly", Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "sun", Timezone: "America/New_York"}, ""},
		{"weekly upper case day", Schedule{Kind: ScheduleWeekly, Time: "12:00", Weekday: "MON", Timezone: "Europe/London"}, ""},
		{"weekly every day name", Schedule{Kind: ScheduleWeekly, Time: "12:00", Weekday: "sat"}, ""},

		// Kind.
		{"unknown kind", Schedule{Kind: "hourly", Time: "02:30"}, "kind"},
		{"kind typo", Schedule{Kind: "dayly", Time: "02:30"}, "kind"},

		// Time.
		{"hour 24", Schedule{Kind: ScheduleDaily, Time: "24:00"}, "time"},
		{"minute 60", Schedule{Kind: ScheduleDaily, Time: "12:60"}, "time"},
		{"one-digit minute", Schedule{Kind: ScheduleDaily, Time: "2:3"}, "time"},
		{"empty time daily", Schedule{Kind: ScheduleDaily}, "time"},
		{"empty time weekly", Schedule{Kind: ScheduleWeekly, Weekday: "sun"}, "time"},
		{"no colon", Schedule{Kind: ScheduleDaily, Time: "0230"}, "time"},
		{"seconds", Schedule{Kind: ScheduleDaily, Time: "02:30:00"}, "time"},
		{"12-hour clock", Schedule{Kind: ScheduleDaily, Time: "2:30pm"}, "time"},
		{"leading space", Schedule{Kind: ScheduleDaily, Time: " 02:30"}, "time"},
		{"negative", Schedule{Kind: ScheduleDaily, Time: "-1:30"}, "time"},
		{"letters", Schedule{Kind: ScheduleDaily, Time: "ab:cd"}, "time"},

		// Weekday.
		{"weekly without day", Schedule{Kind: ScheduleWeekly, Time: "02:30"}, "weekday"},
		{"weekly full day name", Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "sunday"}, "weekday"},
		{"weekly day number", Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "0"}, "weekday"},
		{"daily with day", Schedule{Kind: ScheduleDaily, Time: "02:30", Weekday: "mon"}, "weekday"},

		// Time zone.
		{"unknown zone", Schedule{Kind: ScheduleDaily, Time: "02:30", Timezone: "Mars/Olympus_Mons"}, "timezone"},
		{"zone with path", Schedule{Kind: ScheduleDaily, Time: "02:30", Timezone: "../../etc/passwd"}, "timezone"},
		{"offset is not a zone", Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "sun", Timezone: "+05:30"}, "timezone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tt.s, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want an error naming %q", tt.s, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate(%+v) = %q, want it to name %q", tt.s, err, tt.want)
			}
			// Next refuses the same schedule with the same error.
			next, ok, nerr := tt.s.Next(utc(2026, 1, 1, 0, 0))
			if nerr == nil || ok || !next.IsZero() {
				t.Errorf("Next on invalid schedule = %v, %v, %v; want zero, false, error", next, ok, nerr)
			} else if nerr.Error() != err.Error() {
				t.Errorf("Next error %q differs from Validate error %q", nerr, err)
			}
		})
	}
}

func TestScheduleNextOnDemand(t *testing.T) {
	for _, s := range []Schedule{{}, {Kind: ScheduleOnDemand}, {Kind: ScheduleOnDemand, Timezone: "Asia/Kolkata"}} {
		next, ok, err := s.Next(utc(2026, 6, 1, 12, 0))
		if err != nil || ok || !next.IsZero() {
			t.Errorf("%+v.Next = %v, %v, %v; want zero, false, nil", s, next, ok, err)
		}
	}
}

func TestScheduleNext(t *testing.T) {
	kolkata := mustZone(t, "Asia/Kolkata")
	newYork := mustZone(t, "America/New_York")
	london := mustZone(t, "Europe/London")
	sydney := mustZone(t, "Australia/Sydney")

	dailyKolkata := Schedule{Kind: ScheduleDaily, Time: "02:30", Timezone: "Asia/Kolkata"}
	weeklyKolkata := Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "sun", Timezone: "Asia/Kolkata"}
	dailyNY0230 := Schedule{Kind: ScheduleDaily, Time: "02:30", Timezone: "America/New_York"}
	dailyNY0130 := Schedule{Kind: ScheduleDaily, Time: "01:30", Timezone: "America/New_York"}
	weeklyLondon := Schedule{Kind: ScheduleWeekly, Time: "01:30", Weekday: "sun", Timezone: "Europe/London"}
	weeklySydney := Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "sun", Timezone: "Australia/Sydney"}

	tests := []struct {
		name  string
		s     Schedule
		after time.Time
		want  time.Time // compared as instants
	}{
		// Asia/Kolkata is UTC+5:30 all year: 02:30 IST is 21:00 UTC the day before.
		{"kolkata from midnight", dailyKolkata,
			time.Date(2026, 1, 10, 0, 0, 0, 0, kolkata), utc(2026, 1, 9, 21, 0)},
		{"kolkata just before", dailyKolkata,
			time.Date(2026, 1, 10, 2, 29, 59, 999999999, kolkata), utc(2026, 1, 9, 21, 0)},
		{"kolkata exactly at run is strictly after", dailyKolkata,
			time.Date(2026, 1, 10, 2, 30, 0, 0, kolkata), utc(2026, 1, 10, 21, 0)},
		{"kolkata a nanosecond after", dailyKolkata,
			time.Date(2026, 1, 10, 2, 30, 0, 1, kolkata), utc(2026, 1, 10, 21, 0)},
		{"kolkata late evening", dailyKolkata,
			time.Date(2026, 1, 10, 23, 59, 0, 0, kolkata), utc(2026, 1, 10, 21, 0)},
		{"kolkata after given in utc, earlier utc date", dailyKolkata,
			utc(2026, 1, 9, 20, 59), utc(2026, 1, 9, 21, 0)},
		{"kolkata after given in utc at run", dailyKolkata,
			utc(2026, 1, 9, 21, 0), utc(2026, 1, 10, 21, 0)},
		{"kolkata after given in new york", dailyKolkata,
			time.Date(2026, 1, 9, 15, 59, 0, 0, newYork), utc(2026, 1, 9, 21, 0)},
		{"kolkata year end", dailyKolkata,
			time.Date(2026, 12, 31, 3, 0, 0, 0, kolkata), time.Date(2027, 1, 1, 2, 30, 0, 0, kolkata)},
		{"kolkata leap day", dailyKolkata,
			time.Date(2028, 2, 28, 12, 0, 0, 0, kolkata), time.Date(2028, 2, 29, 2, 30, 0, 0, kolkata)},

		// Weekly Sunday 02:30 IST. 2026-03-01 and 2026-03-08 are Sundays.
		{"kolkata weekly from saturday", weeklyKolkata,
			time.Date(2026, 2, 28, 23, 0, 0, 0, kolkata), time.Date(2026, 3, 1, 2, 30, 0, 0, kolkata)},
		{"kolkata weekly same sunday before time", weeklyKolkata,
			time.Date(2026, 3, 1, 1, 0, 0, 0, kolkata), time.Date(2026, 3, 1, 2, 30, 0, 0, kolkata)},
		{"kolkata weekly same sunday at time", weeklyKolkata,
			time.Date(2026, 3, 1, 2, 30, 0, 0, kolkata), time.Date(2026, 3, 8, 2, 30, 0, 0, kolkata)},
		{"kolkata weekly same sunday after time", weeklyKolkata,
			time.Date(2026, 3, 1, 5, 0, 0, 0, kolkata), time.Date(2026, 3, 8, 2, 30, 0, 0, kolkata)},
		{"kolkata weekly from monday", weeklyKolkata,
			time.Date(2026, 3, 2, 0, 0, 0, 0, kolkata), time.Date(2026, 3, 8, 2, 30, 0, 0, kolkata)},
		{"kolkata weekly from saturday night", weeklyKolkata,
			time.Date(2026, 3, 7, 23, 59, 0, 0, kolkata), time.Date(2026, 3, 8, 2, 30, 0, 0, kolkata)},
		// Sunday 02:30 IST is Saturday 21:00 UTC: the week boundary differs by zone.
		{"kolkata weekly after on utc saturday", weeklyKolkata,
			utc(2026, 2, 28, 20, 59), utc(2026, 2, 28, 21, 0)},
		{"kolkata weekly after on utc sunday", weeklyKolkata,
			utc(2026, 3, 1, 0, 0), utc(2026, 3, 7, 21, 0)},
		{"weekly day is case-insensitive", Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "SUN", Timezone: "Asia/Kolkata"},
			time.Date(2026, 3, 2, 0, 0, 0, 0, kolkata), time.Date(2026, 3, 8, 2, 30, 0, 0, kolkata)},

		// America/New_York springs forward on 2026-03-08 at 02:00 EST (07:00 UTC)
		// to 03:00 EDT: 02:30 does not exist and the run is at 03:30 EDT.
		{"ny spring day before", dailyNY0230,
			time.Date(2026, 3, 7, 12, 0, 0, 0, newYork), utc(2026, 3, 8, 7, 30)},
		{"ny spring from local midnight", dailyNY0230,
			time.Date(2026, 3, 8, 0, 0, 0, 0, newYork), utc(2026, 3, 8, 7, 30)},
		{"ny spring just before jump", dailyNY0230,
			utc(2026, 3, 8, 6, 59), utc(2026, 3, 8, 7, 30)},
		{"ny spring at jump", dailyNY0230,
			utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 30)},
		{"ny spring at the moved run", dailyNY0230,
			utc(2026, 3, 8, 7, 30), time.Date(2026, 3, 9, 2, 30, 0, 0, newYork)},
		{"ny day after spring is edt", dailyNY0230,
			time.Date(2026, 3, 8, 12, 0, 0, 0, newYork), utc(2026, 3, 9, 6, 30)},
		{"ny winter", dailyNY0230,
			time.Date(2026, 1, 15, 12, 0, 0, 0, newYork), utc(2026, 1, 16, 7, 30)},
		// A time on the spring day that exists is untouched.
		{"ny spring 01:30 exists", dailyNY0130,
			time.Date(2026, 3, 8, 0, 0, 0, 0, newYork), utc(2026, 3, 8, 6, 30)},

		// New York falls back on 2026-11-01 at 02:00 EDT (06:00 UTC) to 01:00
		// EST: 01:30 happens at 05:30 UTC and again at 06:30 UTC; it runs at
		// the first only.
		{"ny fall from local midnight", dailyNY0130,
			time.Date(2026, 11, 1, 0, 0, 0, 0, newYork), utc(2026, 11, 1, 5, 30)},
		{"ny fall day before", dailyNY0130,
			time.Date(2026, 10, 31, 12, 0, 0, 0, newYork), utc(2026, 11, 1, 5, 30)},
		{"ny fall after first does not run again", dailyNY0130,
			utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)},
		{"ny fall inside repeated hour", dailyNY0130,
			utc(2026, 11, 1, 6, 0), utc(2026, 11, 2, 6, 30)},
		{"ny fall at second 01:30", dailyNY0130,
			utc(2026, 11, 1, 6, 30), utc(2026, 11, 2, 6, 30)},
		{"ny fall 02:30 is unambiguous", dailyNY0230,
			time.Date(2026, 11, 1, 0, 0, 0, 0, newYork), utc(2026, 11, 1, 7, 30)},

		// Europe/London (UTC+0 in winter): spring 2026-03-29 01:00 GMT -> 02:00
		// BST, autumn 2026-10-25 02:00 BST -> 01:00 GMT. Both are Sundays.
		{"london winter", weeklyLondon,
			utc(2026, 1, 4, 1, 30), utc(2026, 1, 11, 1, 30)},
		{"london spring sunday 01:30 missing", weeklyLondon,
			utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 1, 30)}, // 02:30 BST
		{"london sunday after spring", weeklyLondon,
			utc(2026, 3, 29, 1, 30), utc(2026, 4, 5, 0, 30)}, // 01:30 BST
		{"london summer", weeklyLondon,
			time.Date(2026, 7, 1, 0, 0, 0, 0, london), utc(2026, 7, 5, 0, 30)},
		{"london autumn runs at first 01:30", weeklyLondon,
			utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 0, 30)}, // 01:30 BST
		{"london autumn after first", weeklyLondon,
			utc(2026, 10, 25, 0, 30), utc(2026, 11, 1, 1, 30)},
		{"london autumn inside repeated hour", weeklyLondon,
			utc(2026, 10, 25, 1, 0), utc(2026, 11, 1, 1, 30)},

		// Australia/Sydney (southern hemisphere): autumn 2026-04-05 03:00 AEDT
		// -> 02:00 AEST, spring 2026-10-04 02:00 AEST -> 03:00 AEDT. Sundays.
		{"sydney summer", weeklySydney,
			time.Date(2026, 1, 5, 0, 0, 0, 0, sydney), utc(2026, 1, 10, 15, 30)}, // Sun 11th 02:30 AEDT
		{"sydney autumn runs at first 02:30", weeklySydney,
			utc(2026, 4, 4, 12, 0), utc(2026, 4, 4, 15, 30)}, // 02:30 AEDT
		{"sydney autumn after first", weeklySydney,
			utc(2026, 4, 4, 15, 30), utc(2026, 4, 11, 16, 30)}, // 02:30 AEST
		{"sydney autumn inside repeated hour", weeklySydney,
			utc(2026, 4, 4, 16, 0), utc(2026, 4, 11, 16, 30)},
		{"sydney winter", weeklySydney,
			time.Date(2026, 7, 1, 0, 0, 0, 0, sydney), utc(2026, 7, 4, 16, 30)},
		{"sydney spring 02:30 missing", weeklySydney,
			utc(2026, 10, 3, 0, 0), utc(2026, 10, 3, 16, 30)}, // 03:30 AEDT
		{"sydney sunday after spring", weeklySydney,
			utc(2026, 10, 3, 16, 30), utc(2026, 10, 10, 15, 30)}, // 02:30 AEDT

		// No time zone means UTC.
		{"utc default daily", Schedule{Kind: ScheduleDaily, Time: "02:30"},
			utc(2026, 3, 8, 2, 0), utc(2026, 3, 8, 2, 30)},
		{"utc default daily at time", Schedule{Kind: ScheduleDaily, Time: "02:30"},
			utc(2026, 3, 8, 2, 30), utc(2026, 3, 9, 2, 30)},
		{"utc default ignores caller's zone", Schedule{Kind: ScheduleDaily, Time: "02:30"},
			time.Date(2026, 3, 8, 7, 0, 0, 0, kolkata), utc(2026, 3, 8, 2, 30)}, // 01:30 UTC
		{"utc default weekly", Schedule{Kind: ScheduleWeekly, Time: "00:00", Weekday: "mon"},
			utc(2026, 3, 8, 23, 59), utc(2026, 3, 9, 0, 0)},
		{"explicit UTC zone", Schedule{Kind: ScheduleDaily, Time: "23:59", Timezone: "UTC"},
			utc(2026, 12, 31, 23, 59), utc(2027, 1, 1, 23, 59)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, ok, err := tt.s.Next(tt.after)
			if err != nil || !ok {
				t.Fatalf("Next(%v) = %v, %v, %v; want %v, true, nil", tt.after, next, ok, err, tt.want)
			}
			if !next.Equal(tt.want) {
				t.Errorf("Next(%v) = %v (%v), want %v (%v)", tt.after, next, next.UTC(), tt.want, tt.want.UTC())
			}
			if !next.After(tt.after) {
				t.Errorf("Next(%v) = %v is not strictly after", tt.after, next)
			}
		})
	}
}

// civilDay numbers a calendar date, so that consecutive days differ by one.
func civilDay(t time.Time) int {
	y, m, d := t.Date()
	return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// referenceRun works out, minute by minute and without time.Date in loc, when
// a schedule at hh:mm should run on the local calendar day day (as civilDay):
// the first instant the clock shows hh:mm that day; or, if the clock jumps
// over hh:mm, hh:mm read with the offset from before the jump.
func referenceRun(day, hh, mm int, loc *time.Location) time.Time {
	wall := time.Unix(int64(day)*86400, 0).UTC().Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute)
	// Offsets lie within -12h..+14h; widen a little for safety.
	for u := wall.Add(-15 * time.Hour); u.Before(wall.Add(13 * time.Hour)); u = u.Add(time.Minute) {
		l := u.In(loc)
		if civilDay(l) == day && l.Hour() == hh && l.Minute() == mm {
			return u
		}
	}
	// The wall time never shows: find the jump on that day that skips it.
	for u := wall.Add(-15 * time.Hour); u.Before(wall.Add(13 * time.Hour)); u = u.Add(time.Minute) {
		_, before := u.Add(-time.Minute).In(loc).Zone()
		_, at := u.In(loc).Zone()
		if at > before {
			w := u.Add(-time.Minute).In(loc)
			if civilDay(w) == day {
				// Read with the offset in force before the jump.
				cand := wall.Add(-time.Duration(before) * time.Second)
				if !cand.Before(u) {
					return cand
				}
			}
		}
	}
	return time.Time{}
}

func TestScheduleNextSequence(t *testing.T) {
	tests := []struct {
		s     Schedule
		start time.Time
		// dates that must be among the runs (local dates, as "2006-01-02")
		mustCover []string
	}{
		{Schedule{Kind: ScheduleDaily, Time: "01:30", Timezone: "America/New_York"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-03-08", "2026-11-01"}},
		{Schedule{Kind: ScheduleDaily, Time: "02:30", Timezone: "America/New_York"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-03-08", "2026-11-01"}},
		{Schedule{Kind: ScheduleDaily, Time: "01:30", Timezone: "Europe/London"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-03-29", "2026-10-25"}},
		{Schedule{Kind: ScheduleDaily, Time: "02:30", Timezone: "Australia/Sydney"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-04-05", "2026-10-04"}},
		{Schedule{Kind: ScheduleDaily, Time: "02:30", Timezone: "Asia/Kolkata"}, utc(2026, 1, 1, 0, 0), nil},
		{Schedule{Kind: ScheduleDaily, Time: "00:00", Timezone: "America/Sao_Paulo"}, utc(2026, 1, 1, 0, 0), nil},
		// Lord Howe Island moves its clocks by half an hour.
		{Schedule{Kind: ScheduleDaily, Time: "02:15", Timezone: "Australia/Lord_Howe"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-04-05", "2026-10-04"}},
		{Schedule{Kind: ScheduleDaily, Time: "01:45", Timezone: "Australia/Lord_Howe"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-04-05", "2026-10-04"}},
		{Schedule{Kind: ScheduleDaily, Time: "01:30"}, utc(2026, 1, 1, 0, 0), nil},
		// Weekly: 400 weeks covers several years of changes.
		{Schedule{Kind: ScheduleWeekly, Time: "01:30", Weekday: "sun", Timezone: "America/New_York"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-03-08", "2026-11-01"}},
		{Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "sun", Timezone: "America/New_York"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-03-08", "2026-11-01"}},
		{Schedule{Kind: ScheduleWeekly, Time: "01:30", Weekday: "sun", Timezone: "Europe/London"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-03-29", "2026-10-25"}},
		{Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "sun", Timezone: "Australia/Sydney"}, utc(2026, 1, 1, 0, 0),
			[]string{"2026-04-05", "2026-10-04"}},
		{Schedule{Kind: ScheduleWeekly, Time: "02:30", Weekday: "wed", Timezone: "Asia/Kolkata"}, utc(2026, 1, 1, 0, 0), nil},
	}
	const runs = 400
	for _, tt := range tests {
		name := tt.s.Kind + " " + tt.s.Weekday + " " + tt.s.Time + " " + tt.s.Timezone
		t.Run(name, func(t *testing.T) {
			c, err := tt.s.compile()
			if err != nil {
				t.Fatal(err)
			}
			step := 1
			if tt.s.Kind == ScheduleWeekly {
				step = 7
			}
			seen := map[string]bool{}
			after := tt.start
			prevDay := 0
			for i := 0; i < runs; i++ {
				next, ok, err := tt.s.Next(after)
				if err != nil || !ok {
					t.Fatalf("run %d: Next(%v) = %v, %v, %v", i, after, next, ok, err)
				}
				if !next.After(after) {
					t.Fatalf("run %d: Next(%v) = %v, not strictly after", i, after, next)
				}
				local := next.In(c.loc)
				day := civilDay(local)
				if i == 0 {
					// The first run is on the first matching day whose run is after start.
					first := civilDay(tt.start.In(c.loc))
					for ; ; first++ {
						if step == 7 && time.Unix(int64(first)*86400, 0).UTC().Weekday() != c.weekday {
							continue
						}
						if referenceRun(first, c.hour, c.minute, c.loc).After(tt.start) {
							break
						}
					}
					if day != first {
						t.Fatalf("first run on %v, want local day %v", local, time.Unix(int64(first)*86400, 0).UTC().Format("2006-01-02"))
					}
				} else if day-prevDay != step {
					t.Fatalf("run %d at %v: %d local days after the previous run, want %d", i, local, day-prevDay, step)
				}
				if step == 7 && local.Weekday() != c.weekday {
					t.Fatalf("run %d at %v: weekday %v, want %v", i, local, local.Weekday(), c.weekday)
				}
				if want := referenceRun(day, c.hour, c.minute, c.loc); !next.Equal(want) {
					t.Fatalf("run %d at %v (%v), want %v (%v)", i, local, next.UTC(), want.In(c.loc), want.UTC())
				}
				seen[local.Format("2006-01-02")] = true
				prevDay = day
				after = next
			}
			for _, d := range tt.mustCover {
				if !seen[d] {
					t.Errorf("no run on %s", d)
				}
			}
		})
	}
}

// A scheduler woken late, or a few times within a minute, must not get a run
// twice: whatever instant it asks from between two runs, it gets the same
// next run.
func TestScheduleNextStableBetweenRuns(t *testing.T) {
	s := Schedule{Kind: ScheduleDaily, Time: "01:30", Timezone: "America/New_York"}
	// Around the autumn change: 01:30 EDT (05:30 UTC) is the run; every
	// instant up to the next day's run must give the next day's run.
	want := utc(2026, 11, 2, 6, 30)
	for u := utc(2026, 11, 1, 5, 30); u.Before(want); u = u.Add(7 * time.Minute) {
		next, _, err := s.Next(u)
		if err != nil || !next.Equal(want) {
			t.Fatalf("Next(%v) = %v, %v; want %v", u.UTC(), next.UTC(), err, want)
		}
	}
	// And every instant before the run gives the run.
	run := utc(2026, 11, 1, 5, 30)
	for u := utc(2026, 10, 31, 5, 31); u.Before(run); u = u.Add(7 * time.Minute) {
		next, _, err := s.Next(u)
		if err != nil || !next.Equal(run) {
			t.Fatalf("Next(%v) = %v, %v; want %v", u.UTC(), next.UTC(), err, run)
		}
	}
}
