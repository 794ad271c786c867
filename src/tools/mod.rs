//! Tools for policy staff: a synthetic population to try rules on
//! (`gen population`) and the simulation of a rule set over an event
//! history with its impact report (`rules simulate`).

pub mod population;
pub mod report;
pub mod simulate;
