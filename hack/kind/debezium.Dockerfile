# The Debezium Cassandra 5 agent (jar-with-dependencies, resolved from Maven Central by Maven),
# for the kind path only (hack/kind-up.sh). The JVM flags are in dependencies.yaml.
FROM maven:3.9-eclipse-temurin-17 AS fetch
ARG VERSION=3.4.1.Final
RUN mvn -q -B dependency:copy \
      -Dartifact=io.debezium:debezium-connector-cassandra-5:${VERSION}:jar:jar-with-dependencies \
      -DoutputDirectory=/out && mv /out/*.jar /out/agent.jar

FROM eclipse-temurin:17-jre
COPY --from=fetch /out/agent.jar /opt/debezium/agent.jar
