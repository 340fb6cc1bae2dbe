// Package check holds only tests: they decode every manifest of
// examples/kubernetes strictly into the real Kubernetes API types (an
// unknown or misspelt field, a wrong type or a duplicate key is an error,
// as with `kubectl apply --validate=strict`), and check that the manifests
// agree with gm2-init itself: the probes reach gm2-init's health address,
// every GM2_* value parses, the grace period covers gm2-init's worst-case
// stop, the Service, PodDisruptionBudget and HorizontalPodAutoscaler select
// the Deployment's pods. gm2-init's answers come from the real binary
// (`--dry-run`), never from a copy of its rules.
//
// It is a module of its own so that gm2-init's binary and go.mod gain none
// of the Kubernetes dependencies.
package check
