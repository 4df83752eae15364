/* tools/cli.h: subcommands of the `ember` program. */
#ifndef EMBER_TOOLS_CLI_H
#define EMBER_TOOLS_CLI_H

int ember_cmd_doctor(int argc, char **argv);
int ember_cmd_graph_info(int argc, char **argv);
int ember_cmd_train(int argc, char **argv);
int ember_cmd_eval(int argc, char **argv);
int ember_cmd_predict(int argc, char **argv);
int ember_cmd_plot(int argc, char **argv);

int ember_cmd_convert(int argc, char **argv);
int ember_cmd_gen_data(int argc, char **argv);
int ember_cmd_count(int argc, char **argv);
int ember_cmd_plan(int argc, char **argv);

#endif
