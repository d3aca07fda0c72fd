//! A throwaway brainpoolP256r1 PKI for tests and the lab: a root, an intermediate, a list
//! signer leaf, and lists signed with it. Owner: helper `ti-pki`.
