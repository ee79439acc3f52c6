// Package stats sums with goroutines.
package stats

import "sync"

// ParallelSum adds the integers in [0, n) using `workers` goroutines.
func ParallelSum(n, workers int) int {
	var wg sync.WaitGroup
	parts := make([]int, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				parts[w] += i
			}
		}(w)
	}
	wg.Wait()
	total := 0
	for _, p := range parts {
		total += p
	}
	return total
}
