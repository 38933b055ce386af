#include "common/tls.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "common/local_ca.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

using ::testing::HasSubstr;

std::string TestDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
}

// A gRPC server on loopback with a generic service that answers every call
// UNIMPLEMENTED: the handshake is what is tested.
struct Listener {
  grpc::CallbackGenericService generic;
  std::unique_ptr<grpc::Server> server;
  int port = 0;

  explicit Listener(std::shared_ptr<grpc::ServerCredentials> credentials) {
    grpc::ServerBuilder builder;
    builder.RegisterCallbackGenericService(&generic);
    builder.AddListeningPort("127.0.0.1:0", std::move(credentials), &port);
    server = builder.BuildAndStart();
  }
  ~Listener() { server->Shutdown(); }
};

// Whether a channel made the way every ParaGAN client makes one gets through
// the handshake. An IP address, not "localhost": gRPC's c-ares resolver
// leaks the name it resolves (LeakSanitizer), and the DNS name in the
// certificate is checked through the server-name override instead.
bool Connects(const Listener& listener, const ClientSecurity& security,
              const std::string& host = "127.0.0.1") {
  grpc::ChannelArguments args;
  security.ApplyTo(&args);
  auto channel =
      grpc::CreateCustomChannel(host + ":" + std::to_string(listener.port),
                                security.ChannelCredentials(), args);
  return channel->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(2));
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<LocalCertificates> c = WriteLocalCertificates(TestDir("ca"));
    ASSERT_TRUE(c.ok()) << c.status();
    certs_ = *c;
  }

  std::shared_ptr<grpc::ServerCredentials> Server(const TlsFiles& files) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> c =
        ServerCredentialsFromFiles(files);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }
  ClientSecurity Client(const TlsFiles& files) {
    absl::StatusOr<ClientSecurity> c = ClientSecurityFromFiles(files, "");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : ClientSecurity();
  }

  LocalCertificates certs_;
};

TEST_F(TlsTest, KeysAreReadableByTheirOwnerOnly) {
  for (const std::string& key : {certs_.server_key, certs_.client_key}) {
    struct stat st;
    ASSERT_EQ(stat(key.c_str(), &st), 0) << key;
    EXPECT_EQ(st.st_mode & 0777, 0600) << key;
  }
  struct stat st;
  ASSERT_EQ(stat(TestDir("ca").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700);
}

TEST_F(TlsTest, ServerTlsAcceptsClientsTrustingItsCaOnly) {
  TlsFiles server = certs_.ServerFiles();
  server.ca_file.clear();  // TLS, no client certificates
  Listener listener(Server(server));
  ASSERT_NE(listener.port, 0);
  EXPECT_TRUE(Connects(listener, Client({"", "", certs_.ca_cert, ""})));
  EXPECT_TRUE(
      Connects(listener, Client({"", "", certs_.ca_cert, "localhost"})));
  EXPECT_FALSE(Connects(listener, ClientSecurity()))
      << "a plaintext client got through";

  absl::StatusOr<LocalCertificates> other =
      WriteLocalCertificates(TestDir("other_ca"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(Connects(listener, Client({"", "", other->ca_cert, ""})))
      << "a client trusting another CA accepted the server";
}

TEST_F(TlsTest, ServerNameMustMatchTheCertificate) {
  TlsFiles server = certs_.ServerFiles();
  server.ca_file.clear();
  Listener listener(Server(server));
  EXPECT_FALSE(
      Connects(listener, Client({"", "", certs_.ca_cert, "shard-0.example"})));
  EXPECT_TRUE(
      Connects(listener, Client({"", "", certs_.ca_cert, "localhost"})));
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutACertificateOfItsCa) {
  Listener listener(Server(certs_.ServerFiles()));
  ASSERT_NE(listener.port, 0);
  EXPECT_TRUE(Connects(listener, Client(certs_.ClientFiles())));
  EXPECT_FALSE(Connects(listener, Client({"", "", certs_.ca_cert, ""})))
      << "a client without a certificate got through mutual TLS";
  EXPECT_FALSE(Connects(listener, ClientSecurity()));

  absl::StatusOr<LocalCertificates> other =
      WriteLocalCertificates(TestDir("stranger_ca"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(Connects(listener, Client({other->client_cert, other->client_key,
                                          certs_.ca_cert, ""})))
      << "a certificate of another CA got through mutual TLS";
}

TEST_F(TlsTest, NoFilesMeansPlaintext) {
  Listener listener(Server({}));
  ClientSecurity plain = Client({});
  EXPECT_FALSE(plain.tls_on());
  EXPECT_TRUE(Connects(listener, plain));
}

TEST_F(TlsTest, MismatchErrorsGetAHintNamingTheFlag) {
  const absl::Status closed = absl::UnavailableError(
      "failed to connect to all addresses; last error: UNAVAILABLE: "
      "ipv4:127.0.0.1:4000: Socket closed");
  EXPECT_THAT(ClientSecurity().Explain(closed).message(),
              HasSubstr("the server may require TLS: give --tls_ca_file"));
  const ClientSecurity roots_only = Client({"", "", certs_.ca_cert, ""});
  EXPECT_THAT(roots_only.Explain(closed).message(),
              HasSubstr("give --tls_cert_file and --tls_key_file"));
  const ClientSecurity mutual = Client(certs_.ClientFiles());
  EXPECT_THAT(mutual.Explain(closed).message(),
              HasSubstr("not accept this client certificate"));
  const absl::Status plain_server = absl::UnknownError(
      "Ssl handshake failed: SSL_ERROR_SSL: error:0A00010B:SSL "
      "routines::wrong version number");
  EXPECT_THAT(mutual.Explain(plain_server).message(),
              HasSubstr("the server does not serve TLS"));
  const absl::Status other_ca = absl::UnknownError(
      "Ssl handshake failed: SSL_ERROR_SSL: error:0A000086:SSL "
      "routines::certificate verify failed");
  EXPECT_THAT(mutual.Explain(other_ca).message(),
              HasSubstr("does not chain to --tls_ca_file"));
  // The code stays; other errors pass unchanged.
  EXPECT_EQ(mutual.Explain(other_ca).code(), absl::StatusCode::kUnknown);
  const absl::Status denied = absl::PermissionDeniedError("no");
  EXPECT_EQ(mutual.Explain(denied), denied);
}

TEST_F(TlsTest, BadFilesAreErrorsNamingTheFlag) {
  auto server_error = [](const TlsFiles& f) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> c =
        ServerCredentialsFromFiles(f);
    return c.ok() ? std::string("OK") : std::string(c.status().message());
  };
  auto client_error = [](const TlsFiles& f) {
    absl::StatusOr<ClientSecurity> c = ClientSecurityFromFiles(f, "");
    return c.ok() ? std::string("OK") : std::string(c.status().message());
  };
  const std::string garbage = TestDir("garbage.pem");
  std::ofstream(garbage) << "not a certificate\n";

  EXPECT_THAT(server_error({certs_.server_cert, "", "", ""}),
              HasSubstr("tls_cert_file and tls_key_file go together"));
  EXPECT_THAT(server_error({certs_.server_cert, certs_.client_key, "", ""}),
              HasSubstr("is not the key of the certificate"));
  EXPECT_THAT(server_error({TestDir("missing.pem"), certs_.server_key, "", ""}),
              HasSubstr("tls_cert_file"));
  EXPECT_THAT(server_error({garbage, certs_.server_key, "", ""}),
              HasSubstr("holds no PEM certificate"));
  EXPECT_THAT(server_error({certs_.server_cert, garbage, "", ""}),
              HasSubstr("holds no unencrypted PEM private key"));
  EXPECT_THAT(
      server_error({certs_.server_cert, certs_.server_key, garbage, ""}),
      HasSubstr("tls_ca_file"));
  EXPECT_THAT(server_error({"", "", certs_.ca_cert, ""}),
              HasSubstr("needs the server's own tls_cert_file"));
  EXPECT_THAT(
      server_error({certs_.server_cert, certs_.server_key, "", "localhost"}),
      HasSubstr("tls_server_name is for clients"));
  EXPECT_THAT(client_error({certs_.client_cert, certs_.client_key, "", ""}),
              HasSubstr("only with tls_ca_file"));
  EXPECT_THAT(client_error({"", "", TestDir("missing_ca.pem"), ""}),
              HasSubstr("tls_ca_file"));
  EXPECT_EQ(client_error(certs_.ClientFiles()), "OK");
}

}  // namespace
}  // namespace paragan
