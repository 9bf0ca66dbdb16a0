// Package e2e holds end-to-end tests that build emsign-cp and emsign-bot and
// run them as real processes against each other, as a new user would
// (issue 3's done-when sequence). It has no code of its own.
package e2e
