// Package protocol is the wire contract between the emSign Bot and its
// control plane, and the model both sides share: targets (what to scan),
// locations (where a certificate lives), findings (what was found there) and
// the certificate records printed by `emsign-bot scan`.
//
// It imports only the standard library and nothing of this module, so the
// bot, the control plane and every connector can depend on it.
package protocol

// CapabilityVersion is the version of this contract. It grows by one with
// every change the other side must know about; the date says when.
//
//	1 (2026-11-25): targets tls, file, jks, certstore; findings; records.
//	2 (2026-11-25): rotation jobs (JobRotate, PathOrderCSR,
//	  JobResult.Rotation). A control plane sends rotations only to bots
//	  that activated with 2 or more.
const CapabilityVersion = 2
