// Package models holds what defines a trained inspection model: the bundle
// format shared by training and the daemon, the network definitions, and,
// behind the workstation build tag, training, calibration and evaluation.
package models
