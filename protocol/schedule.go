package protocol

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Schedule kinds (B5).
const (
	ScheduleOnDemand = "on_demand"
	ScheduleDaily    = "daily"
	ScheduleWeekly   = "weekly"
)

// Schedule says when a bot scans on its own: on demand only, daily at a time,
// or weekly on a day at a time, in an IANA time zone (B5). Binaries that use
// it import time/tzdata, since Windows has no zone database.
type Schedule struct {
	Kind string `json:"kind"`
	// Time is "HH:MM", 24-hour, in Timezone.
	Time string `json:"time,omitempty"`
	// Weekday is sun, mon, tue, wed, thu, fri or sat (weekly only).
	Weekday string `json:"weekday,omitempty"`
	// Timezone is an IANA name such as Asia/Kolkata; empty means UTC.
	Timezone string `json:"timezone,omitempty"`
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// Validate checks the schedule and says what is wrong.
func (s Schedule) Validate() error {
	_, err := s.compile()
	return err
}

type compiledSchedule struct {
	kind         string
	hour, minute int
	weekday      time.Weekday
	loc          *time.Location
}

func (s Schedule) compile() (compiledSchedule, error) {
	c := compiledSchedule{kind: s.Kind, loc: time.UTC}
	switch s.Kind {
	case ScheduleOnDemand, "":
		c.kind = ScheduleOnDemand
		return c, nil
	case ScheduleDaily, ScheduleWeekly:
	default:
		return c, fmt.Errorf("schedule kind %q: want on_demand, daily or weekly", s.Kind)
	}
	t, err := time.Parse("15:04", s.Time)
	if err != nil {
		return c, fmt.Errorf("schedule time %q: want HH:MM (24-hour)", s.Time)
	}
	c.hour, c.minute = t.Hour(), t.Minute()
	if s.Kind == ScheduleWeekly {
		wd, ok := weekdays[strings.ToLower(s.Weekday)]
		if !ok {
			return c, fmt.Errorf("schedule weekday %q: want sun, mon, tue, wed, thu, fri or sat", s.Weekday)
		}
		c.weekday = wd
	} else if s.Weekday != "" {
		return c, errors.New("schedule weekday is only for weekly schedules")
	}
	if s.Timezone != "" {
		if c.loc, err = time.LoadLocation(s.Timezone); err != nil {
			return c, fmt.Errorf("schedule timezone %q: not an IANA time zone", s.Timezone)
		}
	}
	return c, nil
}

// Next is the first run strictly after after; ok is false for on-demand
// schedules. On a day whose wall-clock time does not exist (the spring
// daylight-saving jump), the run happens as the clock moves past it; on a day
// the time occurs twice (autumn), it runs once, at the first.
func (s Schedule) Next(after time.Time) (next time.Time, ok bool, err error) {
	c, err := s.compile()
	if err != nil || c.kind == ScheduleOnDemand {
		return time.Time{}, false, err
	}
	local := after.In(c.loc)
	y, m, d := local.Date()
	for i := 0; i < 9; i++ {
		day := time.Date(y, m, d+i, 0, 0, 0, 0, c.loc)
		if c.kind == ScheduleWeekly && day.Weekday() != c.weekday {
			continue
		}
		at := wallTime(y, m, d+i, c.hour, c.minute, c.loc)
		if at.After(after) {
			return at, true, nil
		}
	}
	return time.Time{}, false, errors.New("schedule: no next run found")
}

// wallTime is the instant the clocks in loc show hour:minute on the given
// day, by the rule Next documents: of two such instants (autumn) the first;
// if there is none (spring), the wall time moved forward by the gap, as the
// clock moves past it (02:30 in a 02:00-03:00 gap is 03:30). time.Date alone
// does not promise either: it may pick the second of two, or move a missing
// time backwards, depending on the sign of the zone's offset.
func wallTime(y int, m time.Month, d, hour, minute int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, hour, minute, 0, 0, loc)
	wall := time.Date(y, m, d, hour, minute, 0, 0, time.UTC)
	var first, moved time.Time
	// The offsets in force a few hours either side of t include both sides
	// of any transition that affects this wall time.
	for _, probe := range []time.Time{t.Add(-6 * time.Hour), t, t.Add(6 * time.Hour)} {
		_, off := probe.Zone()
		u := wall.Add(-time.Duration(off) * time.Second).In(loc)
		if _, uoff := u.Zone(); uoff == off {
			if first.IsZero() || u.Before(first) {
				first = u
			}
		} else if moved.IsZero() || u.After(moved) {
			// Read with the offset from before a gap, the wall time lands
			// past the transition, shifted forward by the gap.
			moved = u
		}
	}
	if !first.IsZero() {
		return first
	}
	if !moved.IsZero() {
		return moved
	}
	return t
}
