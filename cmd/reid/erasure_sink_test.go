package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
)

// answeredErasures answers every question about the record of erasures the same way.
type answeredErasures struct {
	erased bool
	err    error
}

func (a answeredErasures) Erased(context.Context, cropstore.CropRecord) (bool, error) {
	return a.erased, a.err
}

// countingSink counts the records it is given.
type countingSink struct{ records int }

func (s *countingSink) Put(context.Context, cropstore.CropRecord) error {
	s.records++
	return nil
}

// TestWithoutErased: a crop of an erased track does not reach the broker, and a record of
// erasures that cannot be read lets crops through to the stages that check it themselves.
func TestWithoutErased(t *testing.T) {
	at := time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)
	record := cropstore.CropRecord{ID: cropstore.NewID("gate", at, 3, 0), Camera: "gate", Time: at, Frame: 3, Track: 12}
	tests := []struct {
		name       string
		erasures   answeredErasures
		wantErased bool
	}{
		{"erased", answeredErasures{erased: true}, true},
		{"not erased", answeredErasures{}, false},
		{"record unreadable", answeredErasures{err: errors.New("bucket unreachable")}, false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			sink := &countingSink{}
			err := withoutErased{sink: sink, erasures: test.erasures}.Put(context.Background(), record)
			if errors.Is(err, cropstore.ErrErased) != test.wantErased || (!test.wantErased && err != nil) {
				t.Errorf("Put = %v; want erased %v", err, test.wantErased)
			}
			if (sink.records == 1) == test.wantErased {
				t.Errorf("the broker got %d records; want erased %v", sink.records, test.wantErased)
			}
		})
	}
}
