//! Certificates made at test time (rcgen): a CA, leaf certificates it signs for loopback
//! (SANs `127.0.0.1` and `localhost`), an expired one, and a second CA nobody trusts.
//! Written as PEM files for warmline, baresip and Kamailio.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate authority and the directory its files are written to.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

/// A leaf's files: certificate, key, and both in one (baresip's `sip_certificate`).
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub combined: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca = TestCa {
            issuer,
            dir: dir.to_path_buf(),
            name: name.to_string(),
        };
        std::fs::write(ca.ca_file(), ca.issuer.pem()).unwrap();
        ca
    }

    /// The CA's certificate, for a peer that trusts it.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for loopback signed by this CA, valid now.
    pub fn leaf(&self, who: &str) -> Leaf {
        self.leaf_valid(who, false)
    }

    /// The same, but its validity ended in 2021.
    pub fn expired_leaf(&self, who: &str) -> Leaf {
        self.leaf_valid(who, true)
    }

    fn leaf_valid(&self, who: &str, expired: bool) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, who);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let base = format!("{}-{who}", self.name);
        let leaf = Leaf {
            cert: self.dir.join(format!("{base}.crt")),
            key: self.dir.join(format!("{base}.key")),
            combined: self.dir.join(format!("{base}.pem")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        std::fs::write(
            &leaf.combined,
            format!("{}{}", cert.pem(), key.serialize_pem()),
        )
        .unwrap();
        leaf
    }
}
