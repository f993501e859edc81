import GatepostWire

extension SMTPError {
    /// The SMTP wording of a mechanism that cannot be used.
    init(_ unavailable: AuthenticationUnavailable) {
        switch unavailable {
        case .cleartextRefused: self = .insecureAuthenticationRefused
        case .notOffered: self = .notSupported("AUTH with \(unavailable)")
        case .noFittingSecret: self = .invalidArgument(unavailable.description)
        }
    }
}
