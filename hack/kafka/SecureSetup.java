// SCRAM users and ACLs of the local stack's SASL_SSL listener, through the Kafka Admin API.
//
// Run by hack/stackctl/kafka_secure.py with Java's single-file source launcher against the
// PLAINTEXT listener (whose principal, User:ANONYMOUS, is a super user), so the broker's own
// jars are all it needs: no kafka-tools download. Reads its instructions from stdin, one a line:
//   user <name> <password-file>
//   acl <user> <TOPIC|GROUP|CLUSTER> <LITERAL|PREFIXED> <resource-name> <OPERATION>
// Upserting a SCRAM credential and creating an existing ACL are both idempotent.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class SecureSetup {
    public static void main(String[] args) throws Exception {
        List<UserScramCredentialAlteration> users = new ArrayList<>();
        List<AclBinding> acls = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.trim().split("\\s+");
            if (f[0].equals("user")) {
                String password = Files.readString(Path.of(f[2])).strip();
                users.add(new UserScramCredentialUpsertion(
                    f[1], new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password));
            } else if (f[0].equals("acl")) {
                acls.add(new AclBinding(
                    new ResourcePattern(ResourceType.valueOf(f[2]), f[4], PatternType.valueOf(f[3])),
                    new AccessControlEntry("User:" + f[1], "*", AclOperation.valueOf(f[5]),
                                           AclPermissionType.ALLOW)));
            } else if (!f[0].isEmpty()) {
                throw new IllegalArgumentException("unknown instruction: " + f[0]);
            }
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        try (Admin admin = Admin.create(props)) {
            admin.alterUserScramCredentials(users).all().get();
            admin.createAcls(acls).all().get();
        }
        System.out.println("users " + users.size() + ", acls " + acls.size());
    }
}
