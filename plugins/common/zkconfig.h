/* zorch plugin kit — Kubernetes client configuration, as kubectl finds it.
 *
 * Sources, in kubectl's order:
 *  - a kubeconfig: the file given, else $KUBECONFIG (a ':'-separated list of
 *    files merged as kubectl merges them: the first file to set a value or a
 *    named cluster/context/user wins; missing files are skipped), else
 *    ~/.kube/config.  The context given, else current-context.  Users may
 *    carry token, tokenFile, client-certificate(-data)/client-key(-data),
 *    or an exec credential plugin (client.authentication.k8s.io/v1 and
 *    v1beta1 ExecCredential, as gke-gcloud-auth-plugin and `aws eks
 *    get-token` print).  Clusters carry server, certificate-authority(-data),
 *    insecure-skip-tls-verify.  Relative file paths are relative to the
 *    kubeconfig file that names them.
 *  - in-cluster: KUBERNETES_SERVICE_HOST/PORT and the service account's
 *    token, ca.crt and namespace under /var/run/secrets/kubernetes.io/
 *    serviceaccount (ZORCH_K8S_SERVICEACCOUNT_DIR overrides the directory,
 *    for tests).
 * TLS is verified unless the kubeconfig says insecure-skip-tls-verify.
 */
#ifndef ZORCH_ZKCONFIG_H
#define ZORCH_ZKCONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/** How to find the configuration. */
typedef struct zk_load_options {
  const char *kubeconfig;  /**< a path (or ':'-list); NULL: $KUBECONFIG, else ~/.kube/config */
  const char *context;     /**< NULL: the kubeconfig's current-context */
  const char *namespace_;  /**< overrides the context's namespace */
  /** 1: in-cluster only; 0: kubeconfig only; -1: kubeconfig, else in-cluster
   *  when no kubeconfig exists and KUBERNETES_SERVICE_HOST is set. */
  int incluster;
} zk_load_options;

typedef struct zk_config {
  char *server;            /**< "https://host:port" */
  char *namespace_;        /**< the namespace to use ("default" when none is set) */
  char *context;           /**< the context's name (NULL in-cluster) */
  char *source;            /**< for messages: "kubeconfig /p (context c)" or "in-cluster config" */
  char *ca_file, *ca_pem;  /**< certificate authority: file or PEM text */
  char *cert_file, *cert_pem, *key_file, *key_pem;
  bool insecure;
  char *token;             /**< the bearer token (static, from tokenFile, or from exec) */
  char *token_file;        /**< re-read on refresh (service-account tokens rotate) */
  /* exec credential plugin */
  char **exec_argv;        /**< NULL-terminated, NULL when there is no exec plugin */
  char **exec_env;         /**< "K=V" extra environment, NULL-terminated */
  char *exec_api_version;
  char *exec_install_hint;
  bool exec_cluster_info;  /**< provideClusterInfo */
  time_t exec_expiry;      /**< 0: no expiry given */
} zk_config;

/** Load.  On failure returns -1 with a message in err naming the file, the
 *  key and what to fix; *out is then empty.  An exec plugin runs here once. */
int zk_config_load(zk_config *out, const zk_load_options *opts, char *err, size_t errlen);

/** Refresh credentials that can change: re-run the exec plugin when its
 *  credential expired (or `force`), re-read tokenFile.  0 or -1 with err. */
int zk_config_refresh(zk_config *c, bool force, char *err, size_t errlen);

/** A deep copy of `in` into *out (0, or -1 on OOM with *out empty). */
int zk_config_copy(zk_config *out, const zk_config *in);

void zk_config_free(zk_config *c);

#endif
