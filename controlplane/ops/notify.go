package ops

import "sync"

// Notifier wakes the long polls of a bot when a job is queued for it. It
// lives in one process: with several replicas, a poll that misses a wake-up
// still finds the job at its next poll (PostgreSQL LISTEN/NOTIFY later).
type Notifier struct {
	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
}

// NewNotifier makes an empty notifier.
func NewNotifier() *Notifier {
	return &Notifier{waiters: map[string]map[chan struct{}]struct{}{}}
}

// Subscribe returns a channel that receives once the bot is notified, and
// the function that unsubscribes it.
func (n *Notifier) Subscribe(botID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	if n.waiters[botID] == nil {
		n.waiters[botID] = map[chan struct{}]struct{}{}
	}
	n.waiters[botID][ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		delete(n.waiters[botID], ch)
		if len(n.waiters[botID]) == 0 {
			delete(n.waiters, botID)
		}
		n.mu.Unlock()
	}
}

// Notify wakes every subscriber of the bot.
func (n *Notifier) Notify(botID string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.waiters[botID] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
