package stats

import "testing"

func TestParallelSum(t *testing.T) {
	if got := ParallelSum(100, 3); got != 4950 {
		t.Fatalf("ParallelSum(100, 3) = %d, want 4950", got)
	}
}
